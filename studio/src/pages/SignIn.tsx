// Sign-in: an account key (the data plane only), or a service principal of the built-in issuer (both planes).

import { useState } from "preact/hooks";
import { ErrorLine } from "../components/bits";
import { useAction } from "../components/load";
import { DEFAULT_TENANT, signInAsPrincipal, signInWithKey } from "../session";

function KeyForm() {
  const [key, setKey] = useState("");
  const [account, setAccount] = useState("");
  const action = useAction();
  return (
    <form class="card signin" onSubmit={(e) => { e.preventDefault(); void action.run(() => signInWithKey(key, account)); }}>
      <h2>Account key</h2>
      <p class="hint">The playground, files and batches. Managing the account needs a service principal.</p>
      <label>Key<input type="password" name="api-key" autocomplete="off" required value={key}
                       onInput={(e) => setKey(e.currentTarget.value)} /></label>
      <label>Account <span class="hint">(empty: the default account)</span>
        <input name="account" value={account} placeholder="default" onInput={(e) => setAccount(e.currentTarget.value)} />
      </label>
      <ErrorLine error={action.error} />
      <button type="submit" class="primary" disabled={action.busy}>Sign in with key</button>
    </form>
  );
}

function PrincipalForm() {
  const [tenant, setTenant] = useState(DEFAULT_TENANT);
  const [clientId, setClientId] = useState("");
  const [secret, setSecret] = useState("");
  const action = useAction();
  return (
    <form class="card signin"
          onSubmit={(e) => { e.preventDefault(); void action.run(() => signInAsPrincipal(tenant, clientId, secret)); }}>
      <h2>Service principal</h2>
      <p class="hint">From <code>azurine principal create NAME</code> (its appId and password), with roles on the
        account: Cognitive Services Contributor and Cognitive Services OpenAI User.</p>
      <label>Tenant<input name="tenant" required value={tenant} onInput={(e) => setTenant(e.currentTarget.value)} /></label>
      <label>Client id<input name="client-id" required value={clientId}
                             onInput={(e) => setClientId(e.currentTarget.value)} /></label>
      <label>Client secret<input type="password" name="client-secret" autocomplete="off" required value={secret}
                                 onInput={(e) => setSecret(e.currentTarget.value)} /></label>
      <ErrorLine error={action.error} />
      <button type="submit" class="primary" disabled={action.busy}>Sign in as service principal</button>
    </form>
  );
}

export function SignIn() {
  return (
    <main class="signin-page">
      <h1>Sign in to Azurine Studio</h1>
      <div class="columns">
        <KeyForm />
        <PrincipalForm />
      </div>
    </main>
  );
}
