// The Studio's frame: sign-in, the account a service principal works on, and one page at a time by the URL's hash.

import type { FunctionComponent } from "preact";
import { useEffect, useState } from "preact/hooks";
import { Accounts } from "./pages/Accounts";
import { Deployments } from "./pages/Deployments";
import { Files } from "./pages/Files";
import { Filters } from "./pages/Filters";
import { Keys } from "./pages/Keys";
import { Monitoring } from "./pages/Monitoring";
import { Playground } from "./pages/Playground";
import { SignIn } from "./pages/SignIn";
import { chooseAccount, session, signOut, subscribe, type AccountRef } from "./session";

interface Page {
  path: string;
  title: string;
  data?: FunctionComponent; // a data-plane page: a key or a token will do
  arm?: FunctionComponent<{ account: AccountRef }>; // a management page: ARM needs a token
}

const PAGES: Page[] = [
  { path: "playground", title: "Playground", data: Playground },
  { path: "deployments", title: "Deployments", arm: Deployments },
  { path: "keys", title: "Keys", arm: Keys },
  { path: "filters", title: "Content filters", arm: Filters },
  { path: "files", title: "Files & batches", data: Files },
  { path: "monitoring", title: "Monitoring", arm: Monitoring },
];

function useHash(): string {
  const read = () => window.location.hash.replace(/^#\/?/, "") || PAGES[0].path;
  const [hash, setHash] = useState(read);
  useEffect(() => {
    const changed = () => setHash(read());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function useSession() {
  const [, setRound] = useState(0);
  useEffect(() => subscribe(() => setRound((r) => r + 1)), []);
  return session();
}

function NeedsToken({ title }: { title: string }) {
  return (
    <main>
      <section class="card">
        <h2>{title}</h2>
        <p>This page manages the account through Azure Resource Manager, which takes a token, not a key. Sign out
          and sign in with a service principal to use it.</p>
      </section>
    </main>
  );
}

export function App() {
  const current = useSession();
  const hash = useHash();
  if (!current) return <SignIn />;
  if (current.kind === "principal" && !current.account) {
    return (
      <>
        <Header />
        <Accounts />
      </>
    );
  }
  const page = PAGES.find((p) => p.path === hash) ?? PAGES[0];
  let body;
  if (page.data) body = <page.data />;
  else if (page.arm && current.kind === "principal" && current.account) body = <page.arm account={current.account} />;
  else body = <NeedsToken title={page.title} />;
  return (
    <>
      <Header page={page.path} />
      {/* a new account starts each page afresh */}
      <div key={current.kind === "principal" ? current.account?.id : "key"}>{body}</div>
    </>
  );
}

function Header({ page }: { page?: string }) {
  const current = session();
  const who = current?.kind === "key"
    ? `Key · ${current.label}`
    : current?.kind === "principal" ? `Principal ${current.clientId.slice(0, 8)}… · ${current.account?.name ?? "no account"}`
    : "";
  return (
    <header class="top">
      <span class="brand">Azurine Studio</span>
      {page && (
        <nav>
          {PAGES.map((p) => (
            <a key={p.path} href={`#/${p.path}`} class={p.path === page ? "active" : ""}
               aria-current={p.path === page ? "page" : undefined}>{p.title}</a>
          ))}
        </nav>
      )}
      <span class="who" title={current?.kind === "principal" ? current.clientId : undefined}>{who}</span>
      {current?.kind === "principal" && current.account && (
        <button type="button" onClick={() => chooseAccount(undefined)}>Switch account</button>
      )}
      <button type="button" onClick={signOut}>Sign out</button>
    </header>
  );
}
