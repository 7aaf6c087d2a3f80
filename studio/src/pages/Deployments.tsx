// Deployments through ARM: list, create (a model of the account's list, a SKU, a capacity), resize, delete; with
// the quota each model and SKU has left.

import { useState } from "preact/hooks";
import { deployments, models, policies, usages, type Deployment, type Model, type Usage } from "../api/arm";
import { ConfirmButton, ErrorLine, Section } from "../components/bits";
import { useAction, useLoad } from "../components/load";
import type { AccountRef } from "../session";

function quotaLeft(all: Usage[] | undefined, usageName: string | undefined): Usage | undefined {
  return all?.find((u) => u.name.value === usageName);
}

function Quota({ usage }: { usage?: Usage }) {
  if (!usage) return null;
  return (
    <span class="quota" data-usage={usage.name.value}>
      Quota left: {usage.limit - usage.currentValue} of {usage.limit} units ({usage.name.localizedValue})
    </span>
  );
}

function CreateForm({ account, modelList, usageList, policyNames, onCreated }: {
  account: AccountRef; modelList: Model[]; usageList?: Usage[]; policyNames: string[]; onCreated: () => void;
}) {
  const [name, setName] = useState("");
  const [modelKey, setModelKey] = useState("");
  const [skuName, setSkuName] = useState("");
  // null until typed: the chosen SKU's default, so a new model or SKU starts from its own default again
  const [typedCapacity, setCapacity] = useState<number | null>(null);
  const [policy, setPolicy] = useState("Microsoft.DefaultV2");
  const action = useAction();
  const model = modelList.find((m) => `${m.name}@${m.version}` === modelKey) ?? modelList[0];
  const sku = model?.skus.find((s) => s.name === skuName) ?? model?.skus[0];

  const capacity = typedCapacity ?? sku?.capacity.default ?? 1;

  async function create(event: Event) {
    event.preventDefault();
    if (!model || !sku) return;
    const body = {
      sku: { name: sku.name, capacity },
      properties: { model: { format: model.format, name: model.name, version: model.version }, raiPolicyName: policy },
    };
    if (await action.run(() => deployments.put(account, name.trim(), body))) {
      setName("");
      onCreated();
    }
  }

  return (
    <form class="grid-form" onSubmit={create} aria-label="Create deployment">
      <label>Name<input name="deployment-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
      <label>Model
        <select name="model" value={model ? `${model.name}@${model.version}` : ""}
                onChange={(e) => { setModelKey(e.currentTarget.value); setCapacity(null); }}>
          {modelList.map((m) => <option key={`${m.name}@${m.version}`} value={`${m.name}@${m.version}`}>
            {m.name} (version {m.version})</option>)}
        </select>
      </label>
      <label>Deployment type
        <select name="sku" value={sku?.name ?? ""} onChange={(e) => { setSkuName(e.currentTarget.value); setCapacity(null); }}>
          {(model?.skus ?? []).map((s) => <option key={s.name} value={s.name}>{s.name}</option>)}
        </select>
      </label>
      <label>Capacity
        <input type="number" name="capacity" min={sku?.capacity.minimum ?? 1} max={sku?.capacity.maximum} step={1}
               value={capacity} onInput={(e) => setCapacity(e.currentTarget.valueAsNumber)} />
      </label>
      <label>Content filter
        <select name="rai-policy" value={policy} onChange={(e) => setPolicy(e.currentTarget.value)}>
          {policyNames.map((p) => <option key={p} value={p}>{p}</option>)}
        </select>
      </label>
      <div class="form-end">
        <Quota usage={quotaLeft(usageList, sku?.usageName)} />
        <button type="submit" class="primary" disabled={action.busy || !name.trim()}>Create deployment</button>
      </div>
      <ErrorLine error={action.error} />
    </form>
  );
}

function Row({ account, deployment, onChanged }: { account: AccountRef; deployment: Deployment; onChanged: () => void }) {
  const [capacity, setCapacity] = useState(deployment.sku.capacity ?? 1);
  const action = useAction();
  const model = deployment.properties.model;
  return (
    <tr data-deployment={deployment.name}>
      <td>{deployment.name}</td>
      <td>{model.name} <span class="hint">{model.version}</span></td>
      <td>{deployment.sku.name}</td>
      <td>
        <input type="number" class="narrow" min={1} step={1} value={capacity} aria-label={`Capacity of ${deployment.name}`}
               onInput={(e) => setCapacity(e.currentTarget.valueAsNumber)} />
        <button type="button" disabled={action.busy || capacity === deployment.sku.capacity}
                onClick={() => action.run(() => deployments.resize(account, deployment.name,
                  { name: deployment.sku.name, capacity })).then((ok) => ok && onChanged())}>Resize</button>
      </td>
      <td>{deployment.properties.raiPolicyName}</td>
      <td>{deployment.properties.provisioningState}</td>
      <td>
        <ConfirmButton label="Delete" confirm={`Delete ${deployment.name}`} disabled={action.busy}
                       onConfirm={() => action.run(() => deployments.remove(account, deployment.name))
                         .then((ok) => ok && onChanged())} />
        <ErrorLine error={action.error} />
      </td>
    </tr>
  );
}

export function Deployments({ account }: { account: AccountRef }) {
  const listed = useLoad(() => deployments.list(account), [account.id]);
  const catalog = useLoad(() => Promise.all([models(account), usages(account), policies.list(account)]), [account.id]);
  const [modelList, usageList, policyList] = catalog.value ?? [];
  const changed = () => { listed.reload(); catalog.reload(); };
  const shownUsages = (usageList ?? []).filter((u) => u.currentValue > 0);

  return (
    <main>
      <Section title="Deployments" actions={<button type="button" onClick={changed}>Refresh</button>}>
        <ErrorLine error={listed.error} />
        <table>
          <thead><tr><th>Name</th><th>Model</th><th>Type</th><th>Capacity</th><th>Content filter</th><th>State</th><th /></tr></thead>
          <tbody>
            {(listed.value ?? []).map((d) => (
              <Row key={`${d.name}:${d.sku.capacity}`} account={account} deployment={d} onChanged={changed} />
            ))}
          </tbody>
        </table>
      </Section>
      <Section title="Create a deployment">
        <ErrorLine error={catalog.error} />
        {modelList && (
          <CreateForm account={account} modelList={modelList} usageList={usageList}
                      policyNames={(policyList ?? []).map((p) => p.name)} onCreated={changed} />
        )}
      </Section>
      <Section title="Quota in use">
        {shownUsages.length ? (
          <table>
            <thead><tr><th>Quota</th><th>In use</th><th>Limit</th><th>Left</th></tr></thead>
            <tbody>
              {shownUsages.map((u) => (
                <tr key={u.name.value}><td>{u.name.localizedValue}</td><td>{u.currentValue}</td><td>{u.limit}</td>
                  <td>{u.limit - u.currentValue}</td></tr>
              ))}
            </tbody>
          </table>
        ) : <p class="hint">No quota in use.</p>}
      </Section>
    </main>
  );
}
