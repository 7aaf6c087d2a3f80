// Who is signed in, and the credentials the API modules attach. Everything lives in sessionStorage (gone with the
// tab); a service principal's secret stays in memory only, so after a reload its tokens are used until they expire
// and then the user signs in again.

import { ApiError, request, send, failure } from "./api/http";

export const DEFAULT_TENANT = "00000000-0000-0000-0000-00000000a2e0";
export const ARM_SCOPE = "https://management.azure.com/.default";
export const DATA_SCOPE = "https://cognitiveservices.azure.com/.default";
// the data plane's listing of deployments exists on the dated api-versions up to 2023-05-15
const LISTING_VERSION = "2022-12-01";
const STORAGE_KEY = "azurine-studio";
const ACCOUNT_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

export interface Token {
  value: string;
  expiresAt: number; // ms since the epoch
}

export interface AccountRef {
  id: string; // the ARM resource id
  name: string;
  subscription: string;
  group: string;
  location: string;
  endpoint: string; // the data plane's path on this server, "/accounts/{name}"
}

export type Session =
  | { kind: "key"; key: string; endpoint: string; label: string }
  | { kind: "principal"; tenant: string; clientId: string; arm: Token; data: Token; account?: AccountRef };

let current: Session | undefined = load();
let secret: string | undefined;
let refreshing: number | undefined;
const listeners = new Set<() => void>();

function load(): Session | undefined {
  try {
    const saved = sessionStorage.getItem(STORAGE_KEY);
    return saved ? (JSON.parse(saved) as Session) : undefined;
  } catch {
    return undefined;
  }
}

function save(next: Session | undefined): void {
  current = next;
  if (next) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(STORAGE_KEY);
  listeners.forEach((listener) => listener());
}

export function session(): Session | undefined {
  return current;
}

export function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function signOut(): void {
  secret = undefined;
  window.clearTimeout(refreshing);
  save(undefined);
}

/** Sign in with an account key: the data plane only. `account` empty is the server's default account. */
export async function signInWithKey(key: string, account: string): Promise<void> {
  const name = account.trim();
  if (name && !ACCOUNT_NAME.test(name)) {
    throw new ApiError(400, "InvalidAccountName", "An account name is letters, digits and hyphens.");
  }
  const endpoint = name ? `/accounts/${name}` : "";
  // any data-plane call proves the key; this one is what the playground needs first anyway
  await request(`${endpoint}/openai/deployments?api-version=${LISTING_VERSION}`, { headers: { "api-key": key.trim() } });
  save({ kind: "key", key: key.trim(), endpoint, label: name || "default account" });
}

interface TokenAnswer {
  access_token: string;
  expires_in: number;
}

async function token(tenant: string, clientId: string, clientSecret: string, scope: string): Promise<Token> {
  const form = new URLSearchParams({ grant_type: "client_credentials", client_id: clientId,
                                     client_secret: clientSecret, scope });
  const response = await send(`/${encodeURIComponent(tenant)}/oauth2/v2.0/token`, { method: "POST", body: form });
  if (!response.ok) throw await failure(response);
  const answer = (await response.json()) as TokenAnswer;
  return { value: answer.access_token, expiresAt: Date.now() + answer.expires_in * 1000 };
}

async function tokens(tenant: string, clientId: string, clientSecret: string): Promise<[Token, Token]> {
  return Promise.all([token(tenant, clientId, clientSecret, ARM_SCOPE),
                      token(tenant, clientId, clientSecret, DATA_SCOPE)]);
}

/** Sign in as a service principal of the built-in issuer, with the client-credentials grant at its token
 * endpoint: one token for ARM, one for the data plane. */
export async function signInAsPrincipal(tenant: string, clientId: string, clientSecret: string): Promise<void> {
  const [arm, data] = await tokens(tenant.trim(), clientId.trim(), clientSecret);
  secret = clientSecret;
  save({ kind: "principal", tenant: tenant.trim(), clientId: clientId.trim(), arm, data });
  scheduleRefresh();
}

function scheduleRefresh(): void {
  window.clearTimeout(refreshing);
  const now = current;
  if (now?.kind !== "principal" || secret === undefined) return;
  const expiresAt = Math.min(now.arm.expiresAt, now.data.expiresAt);
  // five minutes ahead, or a quarter of a short lifetime
  const lead = Math.min(5 * 60_000, (expiresAt - Date.now()) / 4);
  refreshing = window.setTimeout(refresh, Math.max(expiresAt - lead - Date.now(), 1_000));
}

async function refresh(): Promise<void> {
  const now = current;
  if (now?.kind !== "principal" || secret === undefined) return;
  try {
    const [arm, data] = await tokens(now.tenant, now.clientId, secret);
    // the account may have been switched meanwhile: keep it, with the new tokens
    if (current?.kind === "principal" && current.clientId === now.clientId) save({ ...current, arm, data });
    scheduleRefresh();
  } catch {
    refreshing = window.setTimeout(refresh, 30_000); // the issuer may be restarting: try again while tokens last
  }
}

export function chooseAccount(account: AccountRef | undefined): void {
  if (current?.kind === "principal") save({ ...current, account });
}

function live(token: Token): string {
  if (token.expiresAt - Date.now() < 10_000) {
    signOut();
    throw new ApiError(401, "SessionExpired", "The sign-in has expired; sign in again.");
  }
  return token.value;
}

/** The bearer token for ARM; management needs a service principal's sign-in. */
export function armToken(): string {
  if (current?.kind !== "principal") {
    throw new ApiError(401, "TokenRequired", "Management pages need a sign-in with a service principal.");
  }
  return live(current.arm);
}

/** The data plane's path on this server ("" for the default account reached with a key). */
export function dataEndpoint(): string {
  return current?.kind === "key" ? current.endpoint : current?.kind === "principal" ? current.account?.endpoint ?? "" : "";
}

/** The data plane's path on this server and the header that authenticates there. */
export function dataPlane(): { endpoint: string; headers: Record<string, string> } {
  if (current?.kind === "key") return { endpoint: current.endpoint, headers: { "api-key": current.key } };
  if (current?.kind === "principal" && current.account) {
    return { endpoint: current.account.endpoint, headers: { Authorization: `Bearer ${live(current.data)}` } };
  }
  throw new ApiError(401, "AccountRequired", "Choose an account first.");
}

scheduleRefresh();
