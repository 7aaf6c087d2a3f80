// The chat playground: a deployment, a system message and parameters; answers streamed as they are written, each
// message with its content-filter annotations; and the same request as Python.

import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, shown } from "../api/http";
import { chatDeployments, streamChat, type ChatMessage, type ChatRequest } from "../api/data";
import { ErrorLine, Section } from "../components/bits";
import { FilterBadges, merge, type Annotations } from "../components/FilterBadges";
import { useLoad } from "../components/load";
import { pythonChat } from "../code";
import { dataEndpoint, session } from "../session";

interface Turn {
  role: "user" | "assistant";
  content: string;
  annotations?: Annotations;
  error?: string;
  streaming?: boolean;
  usage?: { prompt_tokens: number; completion_tokens: number };
}

interface Parameters {
  temperature: number;
  max_tokens: number;
  top_p: number;
}

function NumberField({ label, value, min, max, step, onChange }: {
  label: string; value: number; min: number; max: number; step: number; onChange: (value: number) => void;
}) {
  return (
    <label>{label}
      <input type="number" value={value} min={min} max={max} step={step}
             onInput={(e) => { const v = e.currentTarget.valueAsNumber; if (!Number.isNaN(v)) onChange(v); }} />
    </label>
  );
}

/** The messages a request sends: the system message, the turns that were answered, and the new prompt. */
function conversation(system: string, turns: Turn[], prompt: string): ChatMessage[] {
  const messages: ChatMessage[] = system.trim() ? [{ role: "system", content: system }] : [];
  for (const turn of turns) {
    if (!turn.error && turn.content) messages.push({ role: turn.role, content: turn.content });
  }
  if (prompt.trim()) messages.push({ role: "user", content: prompt });
  return messages;
}

/** A refused prompt (400 content_filter) carries the filter's findings under innererror. */
function refusedAnnotations(error: unknown): Annotations | undefined {
  if (!(error instanceof ApiError)) return undefined;
  const inner = (error.body as { error?: { innererror?: { content_filter_result?: Record<string, never> } } })
    ?.error?.innererror?.content_filter_result;
  return inner ? merge({}, inner) : undefined;
}

export function Playground() {
  const listed = useLoad(chatDeployments, []);
  // "" until one is picked: the first listed, so that a pick made before the list settles is never overwritten
  const [picked, setDeployment] = useState("");
  const [system, setSystem] = useState("You are a helpful assistant.");
  const [params, setParams] = useState<Parameters>({ temperature: 0.7, max_tokens: 256, top_p: 1 });
  const [turns, setTurns] = useState<Turn[]>([]);
  const [prompt, setPrompt] = useState("");
  const [showCode, setShowCode] = useState(false);
  const [running, setRunning] = useState<AbortController | undefined>();
  const [sent, setSent] = useState<{ deployment: string; request: ChatRequest } | undefined>();
  const end = useRef<HTMLDivElement>(null);

  const deployment = picked || listed.value?.[0]?.id || "";
  useEffect(() => end.current?.scrollIntoView({ block: "nearest" }), [turns]);

  const body = (text: string): ChatRequest => ({ messages: conversation(system, turns, text), ...params });

  const update = (index: number, change: (turn: Turn) => Turn) =>
    setTurns((all) => all.map((turn, i) => (i === index ? change(turn) : turn)));

  async function send(event: Event) {
    event.preventDefault();
    if (!prompt.trim() || !deployment || running) return;
    const request = body(prompt);
    setSent({ deployment, request });
    const userIndex = turns.length;
    const answerIndex = userIndex + 1;
    setTurns([...turns, { role: "user", content: prompt }, { role: "assistant", content: "", streaming: true }]);
    setPrompt("");
    const controller = new AbortController();
    setRunning(controller);
    try {
      for await (const chunk of streamChat(deployment, request, controller.signal)) {
        for (const prompted of chunk.prompt_filter_results ?? []) {
          update(userIndex, (t) => ({ ...t, annotations: merge(t.annotations ?? {}, prompted.content_filter_results) }));
        }
        const usage = chunk.usage;
        if (usage) update(answerIndex, (t) => ({ ...t, usage }));
        const choice = chunk.choices.find((c) => c.index === 0);
        if (choice) {
          update(answerIndex, (t) => ({
            ...t,
            content: t.content + (choice.delta?.content ?? ""),
            annotations: merge(t.annotations ?? {}, choice.content_filter_results),
            error: choice.finish_reason === "content_filter"
              ? "content_filter: The answer was filtered by the deployment's content filter." : t.error,
          }));
        }
      }
      update(answerIndex, (t) => ({ ...t, streaming: false }));
    } catch (error) {
      if (error instanceof DOMException && error.name === "AbortError") {
        update(answerIndex, (t) => ({ ...t, streaming: false }));
      } else {
        const annotations = refusedAnnotations(error);
        update(userIndex, (t) => ({ ...t, annotations: annotations ?? t.annotations }));
        update(answerIndex, (t) => ({ ...t, streaming: false, error: shown(error) }));
      }
    } finally {
      setRunning(undefined);
    }
  }

  // the request being written, else the one sent last
  const shownRequest = prompt.trim() || !sent ? { deployment, request: body(prompt) } : sent;
  const current = session();
  const code = current && shownRequest.deployment
    ? pythonChat(current, dataEndpoint(), shownRequest.deployment, shownRequest.request) : "";

  return (
    <main class="playground">
      <Section title="Setup">
        <ErrorLine error={listed.error} />
        <label>Deployment
          <select name="deployment" value={deployment} onChange={(e) => setDeployment(e.currentTarget.value)}>
            {(listed.value ?? []).map((d) => <option key={d.id} value={d.id}>{d.id} ({d.model})</option>)}
          </select>
        </label>
        <label>System message
          <textarea name="system" rows={4} value={system} onInput={(e) => setSystem(e.currentTarget.value)} />
        </label>
        <div class="params">
          <NumberField label="Temperature" value={params.temperature} min={0} max={2} step={0.1}
                       onChange={(temperature) => setParams({ ...params, temperature })} />
          <NumberField label="Max tokens" value={params.max_tokens} min={1} max={4096} step={1}
                       onChange={(max_tokens) => setParams({ ...params, max_tokens })} />
          <NumberField label="Top p" value={params.top_p} min={0} max={1} step={0.05}
                       onChange={(top_p) => setParams({ ...params, top_p })} />
        </div>
      </Section>
      <Section title="Chat" actions={
        <span class="actions">
          <button type="button" onClick={() => setShowCode(!showCode)} aria-expanded={showCode}>
            {showCode ? "Hide code" : "View code"}
          </button>
          <button type="button" onClick={() => { setTurns([]); setSent(undefined); }} disabled={!!running}>Clear</button>
        </span>}>
        <div class="messages" aria-live="polite">
          {turns.map((turn, i) => (
            <article key={i} class={`message ${turn.role}${turn.streaming ? " streaming" : ""}`} data-role={turn.role}>
              <h3>{turn.role === "user" ? "You" : "Assistant"}</h3>
              {turn.content && <p class="content">{turn.content}</p>}
              {turn.error && <p class="error" role="alert">{turn.error}</p>}
              {turn.usage && <p class="hint">{turn.usage.prompt_tokens} prompt + {turn.usage.completion_tokens} completion
                tokens</p>}
              <FilterBadges annotations={turn.annotations}
                            label={turn.role === "user" ? "Prompt filter results" : "Content filter results"} />
            </article>
          ))}
          <div ref={end} />
        </div>
        <form class="composer" onSubmit={send}>
          <textarea name="prompt" rows={3} placeholder="Type a message" value={prompt}
                    onInput={(e) => setPrompt(e.currentTarget.value)}
                    onKeyDown={(e) => { if (e.key === "Enter" && !e.shiftKey) { void send(e); } }} />
          {running
            ? <button type="button" onClick={() => running.abort()}>Stop</button>
            : <button type="submit" class="primary" disabled={!deployment || !prompt.trim()}>Send</button>}
        </form>
        {showCode && (
          <div class="code">
            <p class="hint">The same request with the openai SDK for Python; the secret comes from the environment.</p>
            <pre aria-label="Python code"><code>{code}</code></pre>
          </div>
        )}
      </Section>
    </main>
  );
}
