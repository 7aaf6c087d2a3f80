// fetch with Azure's error bodies turned into one message: `code: message`.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: unknown = undefined,
  ) {
    super(message);
  }

  /** What the user sees: Azure's `error.code: error.message`. */
  get shown(): string {
    return `${this.code}: ${this.message}`;
  }
}

type Json = Record<string, unknown>;

function asObject(value: unknown): Json | undefined {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Json) : undefined;
}

/** The error a failed answer carries: ARM's and the data plane's `{error: {code, message}}`, Azure Monitor's flat
 * `{code, message}`, or the token endpoint's OAuth2 `{error, error_description}`. */
export function errorOf(status: number, body: unknown, statusText = ""): ApiError {
  const outer = asObject(body);
  const inner = asObject(outer?.error);
  if (inner) {
    return new ApiError(status, String(inner.code ?? status), String(inner.message ?? statusText), body);
  }
  if (outer && typeof outer.error === "string") {
    return new ApiError(status, outer.error, String(outer.error_description ?? statusText), body);
  }
  if (outer && typeof outer.code === "string") {
    return new ApiError(status, outer.code, String(outer.message ?? statusText), body);
  }
  return new ApiError(status, String(status), statusText || "The server answered without a message.", body);
}

export function shown(error: unknown): string {
  if (error instanceof ApiError) return error.shown;
  if (error instanceof Error) return error.message;
  return String(error);
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export interface Call {
  method?: string;
  headers?: Record<string, string>;
  json?: unknown;
  body?: BodyInit;
  signal?: AbortSignal;
}

/** The raw response, after the request went through; a network failure becomes an ApiError too. */
export async function send(url: string, call: Call = {}): Promise<Response> {
  const headers: Record<string, string> = { ...call.headers };
  let body = call.body;
  if (call.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(call.json);
  }
  try {
    return await fetch(url, { method: call.method ?? "GET", headers, body, signal: call.signal,
                              credentials: "omit", cache: "no-store" });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, "NetworkError", `The server could not be reached (${shown(error)}).`);
  }
}

/** A JSON call: its parsed body, or an ApiError with Azure's code and message. */
export async function request<T>(url: string, call: Call = {}): Promise<T> {
  const response = await send(url, call);
  const body = await readBody(response);
  if (!response.ok) throw errorOf(response.status, body, response.statusText);
  return body as T;
}

export async function failure(response: Response): Promise<ApiError> {
  return errorOf(response.status, await readBody(response), response.statusText);
}

export function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined) search.set(key, String(value));
  }
  return search.toString();
}
