// The data plane (`{endpoint}/openai/...`), with the signed-in key or token.

import { dataPlane } from "../session";
import { errorOf, failure, request, send, type Call } from "./http";
import { events } from "./sse";

export const API_VERSION = "2024-10-21";
const LISTING_VERSION = "2022-12-01"; // the dated data plane listed deployments up to 2023-05-15

function url(path: string, version = API_VERSION): string {
  return `${dataPlane().endpoint}/openai/${path}${path.includes("?") ? "&" : "?"}api-version=${version}`;
}

function call(path: string, init: Call = {}, version?: string): Promise<Response> {
  return send(url(path, version), { ...init, headers: { ...init.headers, ...dataPlane().headers } });
}

async function json<T>(path: string, init: Call = {}, version?: string): Promise<T> {
  return request<T>(url(path, version), { ...init, headers: { ...init.headers, ...dataPlane().headers } });
}

export interface DataDeployment {
  id: string;
  model: string;
}

export interface DataModel {
  id: string;
  capabilities: { chat_completion: boolean };
}

/** Deployments whose model chats (or whose model the catalog does not name: let the server judge). */
export async function chatDeployments(): Promise<DataDeployment[]> {
  const [listed, known] = await Promise.all([
    json<{ data: DataDeployment[] }>("deployments", {}, LISTING_VERSION),
    json<{ data: DataModel[] }>("models"),
  ]);
  const chats = new Map(known.data.map((m) => [m.id.toLowerCase(), m.capabilities.chat_completion]));
  return listed.data.filter((d) => chats.get(d.model.toLowerCase()) !== false);
}

export type Severity = "safe" | "low" | "medium" | "high";

export interface FilterResult {
  filtered: boolean;
  severity?: Severity;
  detected?: boolean;
}

export type FilterResults = Record<string, FilterResult | { filtered?: boolean; id?: string }[] | undefined>;

export interface ChatChunk {
  choices: { index: number; delta?: { content?: string | null }; finish_reason?: string | null;
             content_filter_results?: FilterResults }[];
  prompt_filter_results?: { prompt_index: number; content_filter_results: FilterResults }[];
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  error?: unknown;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatRequest {
  messages: ChatMessage[];
  temperature: number;
  max_tokens: number;
  top_p: number;
}

/** A streamed chat completion: each chunk as it arrives. A refused request throws Azure's error. */
export async function* streamChat(deployment: string, body: ChatRequest, signal?: AbortSignal): AsyncGenerator<ChatChunk> {
  const response = await call(`deployments/${encodeURIComponent(deployment)}/chat/completions`, {
    method: "POST", json: { ...body, stream: true, stream_options: { include_usage: true } }, signal,
  });
  if (!response.ok || !response.body) throw await failure(response);
  for await (const data of events(response.body)) {
    if (data === "[DONE]") return;
    const chunk = JSON.parse(data) as ChatChunk;
    if (chunk.error) throw errorOf(response.status, chunk);
    yield chunk;
  }
}

export interface FileObject {
  id: string;
  filename: string;
  purpose: string;
  bytes: number;
  created_at: number;
  status?: string;
}

export interface Batch {
  id: string;
  status: string;
  endpoint: string;
  input_file_id: string;
  output_file_id?: string | null;
  error_file_id?: string | null;
  created_at: number;
  request_counts?: { total: number; completed: number; failed: number };
  errors?: { data?: { code: string; message: string; line?: number }[] } | null;
}

export const files = {
  list: async () => (await json<{ data: FileObject[] }>("files")).data,
  upload: (file: File, purpose: string) => {
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    return json<FileObject>("files", { method: "POST", body: form });
  },
  remove: (id: string) => json<unknown>(`files/${encodeURIComponent(id)}`, { method: "DELETE" }),
  content: async (id: string): Promise<Blob> => {
    const response = await call(`files/${encodeURIComponent(id)}/content`);
    if (!response.ok) throw await failure(response);
    return response.blob();
  },
};

export const batches = {
  list: async () => (await json<{ data: Batch[] }>("batches")).data,
  create: (inputFileId: string, endpoint: string) =>
    json<Batch>("batches", { method: "POST", json: { input_file_id: inputFileId, endpoint, completion_window: "24h" } }),
  cancel: (id: string) => json<Batch>(`batches/${encodeURIComponent(id)}/cancel`, { method: "POST" }),
};
