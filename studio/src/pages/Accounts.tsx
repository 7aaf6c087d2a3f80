// The accounts a service principal may see, across its subscriptions: pick the one to work on.

import { accountRef, accounts, subscriptions, type Account } from "../api/arm";
import { ErrorLine, Section } from "../components/bits";
import { useLoad } from "../components/load";
import { chooseAccount } from "../session";

async function everyAccount(): Promise<Account[]> {
  const found = await Promise.all((await subscriptions()).map((s) => accounts(s.subscriptionId)));
  return found.flat();
}

export function Accounts() {
  const listed = useLoad(everyAccount, []);
  return (
    <main>
      <Section title="Choose an account">
        <ErrorLine error={listed.error} />
        {listed.loading && <p class="hint">Loading…</p>}
        {listed.value && !listed.value.length && <p>No account is visible to this principal: it needs a role on one.</p>}
        {listed.value && listed.value.length > 0 && (
          <table>
            <thead><tr><th>Account</th><th>Resource group</th><th>Location</th><th>Kind</th><th /></tr></thead>
            <tbody>
              {listed.value.map((account) => {
                const ref = accountRef(account);
                return (
                  <tr key={account.id}>
                    <td>{account.name}</td><td>{ref.group}</td><td>{account.location}</td><td>{account.kind}</td>
                    <td><button type="button" class="primary" aria-label={`Open ${account.name}`}
                                onClick={() => chooseAccount(ref)}>Open</button></td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </Section>
    </main>
  );
}
