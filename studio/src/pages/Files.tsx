// Files and batches on the data plane: upload a JSONL, start a batch on it, follow its progress, fetch its results.

import { useEffect, useState } from "preact/hooks";
import { batches, files, type Batch } from "../api/data";
import { ConfirmButton, ErrorLine, Section, when } from "../components/bits";
import { useAction, useLoad } from "../components/load";

const PURPOSES = ["batch", "assistants", "fine-tune"];
const ENDPOINTS = ["/chat/completions", "/completions", "/embeddings"];
const RUNNING = new Set(["validating", "in_progress", "finalizing", "cancelling"]);
const POLL_MS = 2000;

async function download(id: string, name: string): Promise<void> {
  const blob = await files.content(id);
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function Progress({ batch }: { batch: Batch }) {
  const counts = batch.request_counts ?? { total: 0, completed: 0, failed: 0 };
  const done = counts.completed + counts.failed;
  return (
    <span class="progress-cell" data-batch-progress={batch.id}>
      <progress max={counts.total || 1} value={done} />
      {" "}{done} / {counts.total}{counts.failed ? ` (${counts.failed} failed)` : ""}
    </span>
  );
}

function BatchErrors({ batch }: { batch: Batch }) {
  const errors = batch.errors?.data ?? [];
  if (!errors.length) return null;
  return (
    <ul class="error">
      {errors.map((e, i) => <li key={i}>{e.code}: {e.message}{e.line ? ` (line ${e.line})` : ""}</li>)}
    </ul>
  );
}

export function Files() {
  const fileList = useLoad(files.list, []);
  const batchList = useLoad(batches.list, []);
  const [chosen, setChosen] = useState<File | undefined>();
  const [purpose, setPurpose] = useState("batch");
  const [input, setInput] = useState("");
  const [endpoint, setEndpoint] = useState(ENDPOINTS[0]);
  const action = useAction();
  const batchFiles = (fileList.value ?? []).filter((f) => f.purpose === "batch");
  const running = (batchList.value ?? []).some((b) => RUNNING.has(b.status));

  useEffect(() => {
    if (!running) return;
    const timer = window.setTimeout(() => { batchList.reload(); fileList.reload(); }, POLL_MS);
    return () => window.clearTimeout(timer);
  }, [batchList.value, running]);

  async function upload(event: Event) {
    event.preventDefault();
    const file = chosen;
    if (!file) return;
    if (await action.run(async () => setInput((await files.upload(file, purpose)).id))) {
      fileList.reload();
    }
  }

  async function createBatch(event: Event) {
    event.preventDefault();
    const id = input || batchFiles[0]?.id;
    if (id && await action.run(() => batches.create(id, endpoint))) batchList.reload();
  }

  return (
    <main>
      <Section title="Files" actions={<button type="button" onClick={fileList.reload}>Refresh</button>}>
        <form class="params" onSubmit={upload} aria-label="Upload file">
          <label>File<input type="file" name="file" accept=".jsonl,.json,.txt"
                            onChange={(e) => setChosen(e.currentTarget.files?.[0])} /></label>
          <label>Purpose
            <select name="purpose" value={purpose} onChange={(e) => setPurpose(e.currentTarget.value)}>
              {PURPOSES.map((p) => <option key={p} value={p}>{p}</option>)}
            </select>
          </label>
          <button type="submit" class="primary" disabled={!chosen || action.busy}>Upload</button>
        </form>
        <ErrorLine error={fileList.error ?? action.error} />
        <table>
          <thead><tr><th>File</th><th>Name</th><th>Purpose</th><th>Bytes</th><th>Created</th><th /></tr></thead>
          <tbody>
            {(fileList.value ?? []).map((f) => (
              <tr key={f.id} data-file={f.filename}>
                <td><code>{f.id}</code></td><td>{f.filename}</td><td>{f.purpose}</td><td>{f.bytes}</td>
                <td>{when(f.created_at)}</td>
                <td class="actions">
                  <button type="button" onClick={() => action.run(() => download(f.id, f.filename))}>Download</button>
                  <ConfirmButton label="Delete" confirm={`Delete ${f.filename}`}
                                 onConfirm={() => action.run(() => files.remove(f.id)).then((ok) => ok && fileList.reload())} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
      <Section title="Batches" actions={<button type="button" onClick={batchList.reload}>Refresh</button>}>
        <form class="params" onSubmit={createBatch} aria-label="Create batch">
          <label>Input file
            <select name="input-file" value={input || batchFiles[0]?.id || ""} onChange={(e) => setInput(e.currentTarget.value)}>
              {!batchFiles.length && <option value="">No file of purpose batch</option>}
              {batchFiles.map((f) => <option key={f.id} value={f.id}>{f.filename} ({f.id})</option>)}
            </select>
          </label>
          <label>Endpoint
            <select name="endpoint" value={endpoint} onChange={(e) => setEndpoint(e.currentTarget.value)}>
              {ENDPOINTS.map((p) => <option key={p} value={p}>{p}</option>)}
            </select>
          </label>
          <button type="submit" class="primary" disabled={!batchFiles.length || action.busy}>Create batch</button>
        </form>
        <p class="hint">The file's lines name a Global Batch deployment as their <code>model</code>; results come
          within the 24-hour window.</p>
        <ErrorLine error={batchList.error} />
        <table>
          <thead><tr><th>Batch</th><th>Status</th><th>Progress</th><th>Created</th><th>Results</th><th /></tr></thead>
          <tbody>
            {(batchList.value ?? []).map((b) => (
              <tr key={b.id} data-batch={b.id} data-status={b.status}>
                <td><code>{b.id}</code><BatchErrors batch={b} /></td>
                <td class="status">{b.status}</td>
                <td><Progress batch={b} /></td>
                <td>{when(b.created_at)}</td>
                <td class="actions">
                  {b.output_file_id && <button type="button" onClick={() => action.run(() =>
                    download(b.output_file_id!, `${b.id}-output.jsonl`))}>Output</button>}
                  {b.error_file_id && <button type="button" onClick={() => action.run(() =>
                    download(b.error_file_id!, `${b.id}-errors.jsonl`))}>Errors</button>}
                </td>
                <td>{RUNNING.has(b.status) && b.status !== "cancelling" && (
                  <ConfirmButton label="Cancel" confirm="Cancel batch"
                                 onConfirm={() => action.run(() => batches.cancel(b.id)).then(() => batchList.reload())} />)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </main>
  );
}
