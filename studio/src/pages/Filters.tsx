// Content filters through ARM: an account's RAI policies (each filter's threshold, blocking and state per side,
// the mode, the custom blocklists it uses) and its blocklists with their items.

import { useState } from "preact/hooks";
import {
  blocklists, policies, type Blocklist, type BlocklistReference, type ContentFilter, type FilterKind, type Policy,
  type PolicyProperties,
} from "../api/arm";
import { ConfirmButton, ErrorLine, Section } from "../components/bits";
import { useAction, useLoad } from "../components/load";
import type { AccountRef } from "../session";

type Source = "Prompt" | "Completion";
const SOURCES: Source[] = ["Prompt", "Completion"];
const SEVERITIES = ["Low", "Medium", "High"];
const MODES = ["Default", "Asynchronous_filter", "Blocking", "Deferred"];

interface Row extends ContentFilter {
  graded: boolean;
}

/** How the server compares filter names: case, spaces, underscores and hyphens aside. */
const same = (a: string, b: string) => a.replace(/[\s_-]/g, "").toLowerCase() === b.replace(/[\s_-]/g, "").toLowerCase();

/** Every filter the location offers, on each side it applies to, as the policy sets it, else as its base policy
 * does, else off: what the server would run, written out whole so that saving changes only what was edited. */
function rowsOf(kinds: FilterKind[], policy: Policy, base: Policy | undefined): Row[] {
  const rows: Row[] = [];
  for (const kind of kinds) {
    const graded = kind.properties.isMultiLevelFilter;
    for (const source of kind.properties.source ? [kind.properties.source] : SOURCES) {
      const find = (p?: Policy) => p?.properties.contentFilters.find((f) => same(f.name, kind.properties.name) && f.source === source);
      const set = find(policy) ?? find(base);
      rows.push({
        name: kind.properties.name, source, graded,
        enabled: set?.enabled ?? false, blocking: set?.blocking ?? false,
        ...(graded ? { severityThreshold: set?.severityThreshold ?? "Medium" } : {}),
        ...(set?.action ? { action: set.action } : {}),
      });
    }
  }
  return rows;
}

function PolicyEditor({ account, policy, base, kinds, lists, onSaved }: {
  account: AccountRef; policy: Policy; base?: Policy; kinds: FilterKind[]; lists: Blocklist[]; onSaved: () => void;
}) {
  const system = policy.properties.type === "SystemManaged";
  const [rows, setRows] = useState(() => rowsOf(kinds, policy, base));
  const [mode, setMode] = useState(policy.properties.mode);
  const [refs, setRefs] = useState<BlocklistReference[]>(policy.properties.customBlocklists ?? []);
  const [newRef, setNewRef] = useState<BlocklistReference>({ blocklistName: "", source: "Prompt", blocking: true });
  const [saved, setSaved] = useState(false);
  const action = useAction();
  const edit = (index: number, change: Partial<Row>) => {
    setSaved(false);
    setRows(rows.map((row, i) => (i === index ? { ...row, ...change } : row)));
  };

  async function save() {
    const properties: PolicyProperties = {
      mode, basePolicyName: policy.properties.basePolicyName ?? "Microsoft.DefaultV2",
      contentFilters: rows.map(({ graded, ...filter }) => (graded ? filter : { ...filter, severityThreshold: undefined })),
      customBlocklists: refs,
    };
    if (await action.run(() => policies.put(account, policy.name, properties))) {
      setSaved(true);
      onSaved();
    }
  }

  return (
    <Section title={`Policy ${policy.name}`} actions={system ? <span class="hint">System-managed: read only</span> : undefined}>
      <div class="params">
        <label>Mode
          <select name="mode" value={mode} disabled={system} onChange={(e) => { setMode(e.currentTarget.value); setSaved(false); }}>
            {MODES.map((m) => <option key={m} value={m}>{m}</option>)}
          </select>
        </label>
        <p class="hint">Based on {policy.properties.basePolicyName ?? policy.name}</p>
      </div>
      <table class="filters">
        <thead><tr><th>Filter</th><th>Applies to</th><th>Enabled</th><th>Blocking</th><th>Blocks from severity</th></tr></thead>
        <tbody>
          {rows.map((row, i) => (
            <tr key={`${row.name}:${row.source}`} data-filter={row.name} data-source={row.source}>
              <td>{row.name}</td>
              <td>{row.source}</td>
              <td><input type="checkbox" checked={row.enabled} disabled={system}
                         aria-label={`${row.name} ${row.source} enabled`}
                         onChange={(e) => edit(i, { enabled: e.currentTarget.checked })} /></td>
              <td><input type="checkbox" checked={row.blocking} disabled={system}
                         aria-label={`${row.name} ${row.source} blocking`}
                         onChange={(e) => edit(i, { blocking: e.currentTarget.checked })} /></td>
              <td>{row.graded && (
                <select value={row.severityThreshold} disabled={system} aria-label={`${row.name} ${row.source} threshold`}
                        onChange={(e) => edit(i, { severityThreshold: e.currentTarget.value })}>
                  {SEVERITIES.map((s) => <option key={s} value={s}>{s}</option>)}
                </select>)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Custom blocklists</h3>
      {refs.length ? (
        <table>
          <thead><tr><th>Blocklist</th><th>Applies to</th><th>Blocking</th><th /></tr></thead>
          <tbody>
            {refs.map((ref, i) => (
              <tr key={`${ref.blocklistName}:${ref.source}`}>
                <td>{ref.blocklistName}</td><td>{ref.source}</td><td>{ref.blocking ? "yes" : "no"}</td>
                <td>{!system && <button type="button" onClick={() => { setRefs(refs.filter((_, j) => j !== i)); setSaved(false); }}>
                  Remove</button>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : <p class="hint">None.</p>}
      {!system && lists.length > 0 && (
        <div class="params">
          <label>Blocklist
            <select name="blocklist-ref" value={newRef.blocklistName}
                    onChange={(e) => setNewRef({ ...newRef, blocklistName: e.currentTarget.value })}>
              <option value="">Choose…</option>
              {lists.map((l) => <option key={l.name} value={l.name}>{l.name}</option>)}
            </select>
          </label>
          <label>Applies to
            <select name="blocklist-source" value={newRef.source}
                    onChange={(e) => setNewRef({ ...newRef, source: e.currentTarget.value as Source })}>
              {SOURCES.map((s) => <option key={s} value={s}>{s}</option>)}
            </select>
          </label>
          <button type="button" disabled={!newRef.blocklistName}
                  onClick={() => { setRefs([...refs, newRef]); setSaved(false); }}>Add blocklist</button>
        </div>
      )}
      <ErrorLine error={action.error} />
      {!system && (
        <div class="form-end">
          {saved && <span class="ok" role="status">Saved</span>}
          <button type="button" class="primary" disabled={action.busy} onClick={save}>Save policy</button>
        </div>
      )}
    </Section>
  );
}

function NewPolicy({ account, bases, onCreated }: { account: AccountRef; bases: Policy[];
                                                    onCreated: (name: string) => void }) {
  const [name, setName] = useState("");
  const [baseName, setBaseName] = useState(bases[0]?.name ?? "Microsoft.DefaultV2");
  const action = useAction();
  async function create(event: Event) {
    event.preventDefault();
    const base = bases.find((b) => b.name === baseName);
    const properties: PolicyProperties = {
      mode: base?.properties.mode ?? "Default", basePolicyName: baseName,
      contentFilters: base?.properties.contentFilters ?? [], customBlocklists: [],
    };
    if (await action.run(() => policies.put(account, name.trim(), properties))) {
      onCreated(name.trim());
      setName("");
    }
  }
  return (
    <form class="params" onSubmit={create} aria-label="New policy">
      <label>New policy<input name="policy-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
      <label>Based on
        <select name="base-policy" value={baseName} onChange={(e) => setBaseName(e.currentTarget.value)}>
          {bases.map((b) => <option key={b.name} value={b.name}>{b.name}</option>)}
        </select>
      </label>
      <button type="submit" disabled={action.busy || !name.trim()}>Create policy</button>
      <ErrorLine error={action.error} />
    </form>
  );
}

function Items({ account, list }: { account: AccountRef; list: string }) {
  const items = useLoad(() => blocklists.items(account, list), [account.id, list]);
  const [pattern, setPattern] = useState("");
  const [isRegex, setIsRegex] = useState(false);
  const action = useAction();
  async function add(event: Event) {
    event.preventDefault();
    const name = `item-${crypto.randomUUID().slice(0, 8)}`;
    if (await action.run(() => blocklists.putItem(account, list, name, pattern, isRegex))) {
      setPattern("");
      items.reload();
    }
  }
  return (
    <div class="items">
      <h3>Items of {list}</h3>
      <ErrorLine error={items.error ?? action.error} />
      <table>
        <thead><tr><th>Pattern</th><th>Regex</th><th /></tr></thead>
        <tbody>
          {(items.value ?? []).map((item) => (
            <tr key={item.name}>
              <td><code>{item.properties.pattern}</code></td><td>{item.properties.isRegex ? "yes" : "no"}</td>
              <td><button type="button" onClick={() => action.run(() => blocklists.removeItem(account, list, item.name))
                .then((ok) => ok && items.reload())}>Delete</button></td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="params" onSubmit={add} aria-label="Add item">
        <label>Pattern<input name="pattern" required value={pattern} onInput={(e) => setPattern(e.currentTarget.value)} /></label>
        <label class="inline"><input type="checkbox" checked={isRegex} onChange={(e) => setIsRegex(e.currentTarget.checked)} />
          Regular expression</label>
        <button type="submit" disabled={action.busy || !pattern.trim()}>Add item</button>
      </form>
    </div>
  );
}

function Blocklists({ account, lists, onChanged }: { account: AccountRef; lists: Blocklist[]; onChanged: () => void }) {
  const [open, setOpen] = useState<string | undefined>();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const action = useAction();
  async function create(event: Event) {
    event.preventDefault();
    if (await action.run(() => blocklists.put(account, name.trim(), description))) {
      setOpen(name.trim());
      setName("");
      setDescription("");
      onChanged();
    }
  }
  return (
    <Section title="Blocklists">
      <ErrorLine error={action.error} />
      {lists.length ? (
        <table>
          <thead><tr><th>Name</th><th>Description</th><th /></tr></thead>
          <tbody>
            {lists.map((list) => (
              <tr key={list.name} class={open === list.name ? "selected" : ""}>
                <td>{list.name}</td><td>{list.properties.description}</td>
                <td class="actions">
                  <button type="button" onClick={() => setOpen(list.name)}>Items</button>
                  <ConfirmButton label="Delete" confirm={`Delete ${list.name}`}
                                 onConfirm={() => action.run(() => blocklists.remove(account, list.name))
                                   .then((ok) => { if (ok) { setOpen(undefined); onChanged(); } })} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : <p class="hint">No blocklists yet.</p>}
      <form class="params" onSubmit={create} aria-label="New blocklist">
        <label>New blocklist<input name="blocklist-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
        <label>Description<input name="blocklist-description" value={description}
                                 onInput={(e) => setDescription(e.currentTarget.value)} /></label>
        <button type="submit" disabled={action.busy || !name.trim()}>Create blocklist</button>
      </form>
      {open && lists.some((l) => l.name === open) && <Items key={open} account={account} list={open} />}
    </Section>
  );
}

export function Filters({ account }: { account: AccountRef }) {
  const loaded = useLoad(() => Promise.all([policies.list(account), policies.kinds(account), blocklists.list(account)]),
                         [account.id]);
  const [selected, setSelected] = useState<string | undefined>();
  const removing = useAction();
  const [all, kinds, lists] = loaded.value ?? [[], [], []];
  const policy = all.find((p) => p.name === selected);
  const bases = all.filter((p) => p.properties.type === "SystemManaged");
  const base = policy && all.find((p) => p.name === (policy.properties.basePolicyName ?? policy.name));

  return (
    <main>
      <Section title="Content filters" actions={<button type="button" onClick={loaded.reload}>Refresh</button>}>
        <ErrorLine error={loaded.error ?? removing.error} />
        <table>
          <thead><tr><th>Policy</th><th>Type</th><th>Mode</th><th /></tr></thead>
          <tbody>
            {all.map((p) => (
              <tr key={p.name} class={p.name === selected ? "selected" : ""} data-policy={p.name}>
                <td>{p.name}</td><td>{p.properties.type}</td><td>{p.properties.mode}</td>
                <td class="actions">
                  <button type="button" onClick={() => setSelected(p.name)} aria-label={`Edit ${p.name}`}>
                    {p.properties.type === "SystemManaged" ? "View" : "Edit"}</button>
                  {p.properties.type !== "SystemManaged" && (
                    <ConfirmButton label="Delete" confirm={`Delete ${p.name}`}
                                   onConfirm={() => removing.run(() => policies.remove(account, p.name))
                                     .then((ok) => ok && loaded.reload())} />)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {bases.length > 0 && <NewPolicy account={account} bases={bases}
                                        onCreated={(name) => { setSelected(name); loaded.reload(); }} />}
      </Section>
      {policy && kinds.length > 0 && (
        <PolicyEditor key={policy.name} account={account} policy={policy}
                      base={base} kinds={kinds} lists={lists} onSaved={loaded.reload} />
      )}
      <Blocklists account={account} lists={lists} onChanged={loaded.reload} />
    </main>
  );
}
