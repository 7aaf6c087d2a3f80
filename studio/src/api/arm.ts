// Azure Resource Manager: the account's resources under Microsoft.CognitiveServices, Azure Monitor's metrics and
// Cost Management's query.

import { armToken, type AccountRef } from "../session";
import { request, query, type Call } from "./http";

const COGNITIVE = "2024-10-01";
const SUBSCRIPTIONS = "2022-12-01";
const MONITOR = "2023-10-01";
const COST_MANAGEMENT = "2023-11-01";
const PROVIDER = "Microsoft.CognitiveServices";

function arm<T>(path: string, version: string, call: Call = {}, params: Record<string, string> = {}): Promise<T> {
  const search = query({ ...params, "api-version": version });
  return request<T>(`${path}?${search}`, { ...call, headers: { ...call.headers, Authorization: `Bearer ${armToken()}` } });
}

interface List<T> {
  value: T[];
}

export interface Subscription {
  subscriptionId: string;
  displayName: string;
}

export interface Account {
  id: string;
  name: string;
  location: string;
  kind: string;
  properties: { endpoint: string };
}

export interface Sku {
  name: string;
  capacity?: number;
}

export interface Deployment {
  name: string;
  sku: Sku;
  properties: {
    model: { format: string; name: string; version: string };
    provisioningState: string;
    raiPolicyName?: string;
  };
}

export interface ModelSku {
  name: string;
  usageName: string;
  capacity: { default: number; maximum: number; minimum: number };
}

export interface Model {
  name: string;
  version: string;
  format: string;
  skus: ModelSku[];
}

export interface Usage {
  name: { value: string; localizedValue: string };
  currentValue: number;
  limit: number;
}

export interface Keys {
  key1: string;
  key2: string;
}

export interface ContentFilter {
  name: string;
  source: "Prompt" | "Completion";
  enabled: boolean;
  blocking: boolean;
  severityThreshold?: string;
  action?: string;
}

export interface BlocklistReference {
  blocklistName: string;
  source: "Prompt" | "Completion";
  blocking: boolean;
}

export interface PolicyProperties {
  mode: string;
  basePolicyName?: string;
  type?: "SystemManaged" | "UserManaged";
  contentFilters: ContentFilter[];
  customBlocklists: BlocklistReference[];
}

export interface Policy {
  name: string;
  properties: PolicyProperties;
}

export interface FilterKind {
  name: string;
  properties: { name: string; source?: "Prompt" | "Completion"; isMultiLevelFilter: boolean };
}

export interface Blocklist {
  name: string;
  properties: { description?: string };
}

export interface BlocklistItem {
  name: string;
  properties: { pattern: string; isRegex: boolean };
}

export interface MetricValue {
  timeStamp: string;
  total?: number;
  average?: number;
}

export interface Metric {
  name: { value: string; localizedValue: string };
  unit: string;
  timeseries: { metadatavalues: { name: { value: string }; value: string }[]; data: MetricValue[] }[];
}

export interface Metrics {
  timespan: string;
  interval: string;
  value: Metric[];
}

/** The parts of an account's resource id, and the data plane's path on this server. */
export function accountRef(account: Account): AccountRef {
  const parts = account.id.split("/");
  // ARM and the data plane are this same server: the host in `endpoint` is the one this call came by, so only
  // the path matters (and connect-src 'self' reaches no other origin)
  const path = new URL(account.properties.endpoint, window.location.origin).pathname.replace(/\/+$/, "");
  return { id: account.id, name: account.name, subscription: parts[2], group: parts[4],
           location: account.location, endpoint: path };
}

export async function subscriptions(): Promise<Subscription[]> {
  return (await arm<List<Subscription>>("/subscriptions", SUBSCRIPTIONS)).value;
}

export async function accounts(subscription: string): Promise<Account[]> {
  const path = `/subscriptions/${subscription}/providers/${PROVIDER}/accounts`;
  return (await arm<List<Account>>(path, COGNITIVE)).value;
}

export const deployments = {
  list: async (a: AccountRef) => (await arm<List<Deployment>>(`${a.id}/deployments`, COGNITIVE)).value,
  put: (a: AccountRef, name: string, body: unknown) =>
    arm<Deployment>(`${a.id}/deployments/${encodeURIComponent(name)}`, COGNITIVE, { method: "PUT", json: body }),
  resize: (a: AccountRef, name: string, sku: Sku) =>
    arm<Deployment>(`${a.id}/deployments/${encodeURIComponent(name)}`, COGNITIVE, { method: "PATCH", json: { sku } }),
  remove: (a: AccountRef, name: string) =>
    arm<unknown>(`${a.id}/deployments/${encodeURIComponent(name)}`, COGNITIVE, { method: "DELETE" }),
};

export async function models(a: AccountRef): Promise<Model[]> {
  return (await arm<List<Model>>(`${a.id}/models`, COGNITIVE)).value;
}

export async function usages(a: AccountRef): Promise<Usage[]> {
  return (await arm<List<Usage>>(`${a.id}/usages`, COGNITIVE)).value;
}

export const keys = {
  list: (a: AccountRef) => arm<Keys>(`${a.id}/listKeys`, COGNITIVE, { method: "POST" }),
  regenerate: (a: AccountRef, keyName: "Key1" | "Key2") =>
    arm<Keys>(`${a.id}/regenerateKey`, COGNITIVE, { method: "POST", json: { keyName } }),
};

export const policies = {
  list: async (a: AccountRef) => (await arm<List<Policy>>(`${a.id}/raiPolicies`, COGNITIVE)).value,
  put: (a: AccountRef, name: string, properties: PolicyProperties) =>
    arm<Policy>(`${a.id}/raiPolicies/${encodeURIComponent(name)}`, COGNITIVE, { method: "PUT", json: { properties } }),
  remove: (a: AccountRef, name: string) =>
    arm<unknown>(`${a.id}/raiPolicies/${encodeURIComponent(name)}`, COGNITIVE, { method: "DELETE" }),
  /** The content filters a policy can set, as the location lists them. */
  kinds: async (a: AccountRef) => (await arm<List<FilterKind>>(
    `/subscriptions/${a.subscription}/providers/${PROVIDER}/locations/${a.location}/raiContentFilters`, COGNITIVE)).value,
};

export const blocklists = {
  list: async (a: AccountRef) => (await arm<List<Blocklist>>(`${a.id}/raiBlocklists`, COGNITIVE)).value,
  put: (a: AccountRef, name: string, description: string) =>
    arm<Blocklist>(`${a.id}/raiBlocklists/${encodeURIComponent(name)}`, COGNITIVE,
                   { method: "PUT", json: { properties: { description } } }),
  remove: (a: AccountRef, name: string) =>
    arm<unknown>(`${a.id}/raiBlocklists/${encodeURIComponent(name)}`, COGNITIVE, { method: "DELETE" }),
  items: async (a: AccountRef, list: string) => (await arm<List<BlocklistItem>>(
    `${a.id}/raiBlocklists/${encodeURIComponent(list)}/raiBlocklistItems`, COGNITIVE)).value,
  putItem: (a: AccountRef, list: string, name: string, pattern: string, isRegex: boolean) =>
    arm<BlocklistItem>(`${a.id}/raiBlocklists/${encodeURIComponent(list)}/raiBlocklistItems/${encodeURIComponent(name)}`,
                       COGNITIVE, { method: "PUT", json: { properties: { pattern, isRegex } } }),
  removeItem: (a: AccountRef, list: string, name: string) =>
    arm<unknown>(`${a.id}/raiBlocklists/${encodeURIComponent(list)}/raiBlocklistItems/${encodeURIComponent(name)}`,
                 COGNITIVE, { method: "DELETE" }),
};

export interface MetricsQuery {
  metricnames: string[];
  timespan: string;
  interval: string;
  aggregation: string[];
  filter: string;
}

/** Azure Monitor's Metrics API on the account. */
export function metrics(a: AccountRef, q: MetricsQuery): Promise<Metrics> {
  return arm<Metrics>(`${a.id}/providers/Microsoft.Insights/metrics`, MONITOR, {}, {
    metricnames: q.metricnames.join(","), timespan: q.timespan, interval: q.interval,
    aggregation: q.aggregation.join(","), $filter: q.filter,
  });
}

/** A Cost Management query (`QueryDefinition`); Azurine also takes the granularity `Hourly`. */
export interface CostQuery {
  type: "ActualCost" | "AmortizedCost" | "Usage";
  timeframe: string;
  timePeriod?: { from: string; to: string };
  dataset: {
    granularity?: "Daily" | "Monthly" | "Hourly";
    aggregation: Record<string, { name: string; function: "Sum" }>;
    grouping?: { type: "Dimension" | "TagKey"; name: string }[];
  };
}

export interface CostResult {
  columns: { name: string; type: string }[];
  rows: (string | number)[][];
}

interface CostPage {
  properties: CostResult & { nextLink?: string | null };
}

/** Cost Management's Query API on the account, every page of it. */
export async function costs(a: AccountRef, q: CostQuery): Promise<CostResult> {
  const path = `${a.id}/providers/Microsoft.CostManagement/query`;
  const first = await arm<CostPage>(path, COST_MANAGEMENT, { method: "POST", json: q });
  const { columns } = first.properties;
  const rows = [...first.properties.rows];
  let next = first.properties.nextLink;
  for (let pages = 1; next && pages < 50; pages++) {
    // the link names this server by the host the call came by: only its path and query are used (connect-src 'self')
    const link = new URL(next, window.location.origin);
    const following = await request<CostPage>(`${link.pathname}${link.search}`, {
      method: "POST", json: q, headers: { Authorization: `Bearer ${armToken()}` } });
    rows.push(...following.properties.rows);
    next = following.properties.nextLink;
  }
  return { columns, rows };
}
