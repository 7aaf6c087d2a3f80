// The account's two keys through ARM: shown on demand, regenerated one at a time.

import { useState } from "preact/hooks";
import { keys, type Keys as KeyPair } from "../api/arm";
import { ConfirmButton, ErrorLine, Section } from "../components/bits";
import { useAction, useLoad } from "../components/load";
import type { AccountRef } from "../session";

function mask(key: string): string {
  return `${"•".repeat(12)}${key.slice(-4)}`;
}

function KeyRow({ name, value, busy, onRegenerate }: { name: "Key1" | "Key2"; value: string; busy: boolean;
                                                       onRegenerate: () => void }) {
  const [visible, setVisible] = useState(false);
  return (
    <tr data-key={name}>
      <th scope="row">{name === "Key1" ? "Key 1" : "Key 2"}</th>
      <td><code class="key">{visible ? value : mask(value)}</code></td>
      <td class="actions">
        <button type="button" onClick={() => setVisible(!visible)} aria-label={`${visible ? "Hide" : "Show"} ${name}`}>
          {visible ? "Hide" : "Show"}
        </button>
        <button type="button" onClick={() => navigator.clipboard?.writeText(value)} aria-label={`Copy ${name}`}>Copy</button>
        <ConfirmButton label={`Regenerate ${name}`} confirm={`Yes, regenerate ${name}`} disabled={busy}
                       onConfirm={onRegenerate} />
      </td>
    </tr>
  );
}

export function Keys({ account }: { account: AccountRef }) {
  const listed = useLoad(() => keys.list(account), [account.id]);
  const [pair, setPair] = useState<KeyPair | undefined>();
  const action = useAction();
  const shownPair = pair ?? listed.value;
  const regenerate = (name: "Key1" | "Key2") => action.run(async () => setPair(await keys.regenerate(account, name)));
  return (
    <main>
      <Section title={`Keys of ${account.name}`}>
        <p class="hint">Either key authenticates the data plane (<code>api-key</code> header) at
          {" "}<code>{window.location.origin}{account.endpoint}/</code>. Regenerate one while clients use the other.</p>
        <ErrorLine error={listed.error ?? action.error} />
        {shownPair && (
          <table class="keys">
            <tbody>
              <KeyRow name="Key1" value={shownPair.key1} busy={action.busy} onRegenerate={() => regenerate("Key1")} />
              <KeyRow name="Key2" value={shownPair.key2} busy={action.busy} onRegenerate={() => regenerate("Key2")} />
            </tbody>
          </table>
        )}
      </Section>
    </main>
  );
}
