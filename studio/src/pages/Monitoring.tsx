// Azure Monitor's metrics of the account, per deployment, for the last hour, day or week: requests, tokens and time
// to response, read from the Metrics API (`{account}/providers/Microsoft.Insights/metrics`); and what that usage
// cost, per deployment and hour, read from Cost Management's Query API (`{account}/providers/
// Microsoft.CostManagement/query`).

import { useEffect, useMemo, useState } from "preact/hooks";
import { costs, metrics, type CostResult, type Metric, type Metrics } from "../api/arm";
import { ApiError, shown } from "../api/http";
import { ErrorLine, Section } from "../components/bits";
import { LineChart, type Line } from "../components/LineChart";
import { useLoad } from "../components/load";
import type { AccountRef } from "../session";

interface Range {
  label: string;
  span: number; // ms
  interval: string;
  step: number; // ms
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const RANGES: Range[] = [
  { label: "Last hour", span: 60 * MINUTE, interval: "PT1M", step: MINUTE },
  { label: "Last day", span: 24 * 60 * MINUTE, interval: "PT15M", step: 15 * MINUTE },
  { label: "Last week", span: 7 * 24 * 60 * MINUTE, interval: "PT1H", step: 60 * MINUTE },
];
const COUNTS = [
  { name: "AzureOpenAIRequests", title: "Requests", unit: "requests" },
  { name: "ProcessedPromptTokens", title: "Prompt tokens", unit: "tokens" },
  { name: "GeneratedTokens", title: "Generated tokens", unit: "tokens" },
];
const LATENCY = { name: "AzureOpenAITimeToResponse", title: "Time to response", unit: "ms" };
const SPLIT = "ModelDeploymentName eq '*'";
const REFRESH_MS = 30_000;

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

async function load(account: AccountRef, range: Range): Promise<{ counts: Metrics; latency: Metrics; start: number }> {
  // whole intervals, so the last one holds the current minute
  const end = Math.ceil((Date.now() + 1) / range.step) * range.step;
  const start = end - range.span;
  const timespan = `${iso(start)}/${iso(end)}`;
  const [counts, latency] = await Promise.all([
    metrics(account, { metricnames: COUNTS.map((m) => m.name), timespan, interval: range.interval,
                       aggregation: ["Total"], filter: SPLIT }),
    metrics(account, { metricnames: [LATENCY.name], timespan, interval: range.interval,
                       aggregation: ["Average", "Count"], filter: SPLIT }),
  ]);
  return { counts, latency, start };
}

interface Cost {
  currency: string;
  times: number[]; // seconds: the hours the window touches
  lines: Line[];
  byDeployment: Map<string, number>;
  total: number;
}

/** The window's cost per deployment and hour. A principal without a role that reads cost gets `denied`, not an
 * error: the metrics still show. */
async function loadCost(account: AccountRef, range: Range): Promise<{ cost?: Cost; denied?: string }> {
  const to = Date.now();
  const from = to - range.span;
  let result: CostResult;
  try {
    result = await costs(account, {
      type: "ActualCost", timeframe: "Custom", timePeriod: { from: iso(from), to: iso(to) },
      dataset: { granularity: "Hourly", aggregation: { totalCost: { name: "Cost", function: "Sum" } },
                 grouping: [{ type: "Dimension", name: "DeploymentName" }] },
    });
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) return { denied: shown(error) };
    throw error;
  }
  const column = (name: string) => result.columns.findIndex((c) => c.name === name);
  const [cost, deployment, hour, currency] = ["Cost", "DeploymentName", "UsageDateTime", "Currency"].map(column);
  const first = Math.floor(from / HOUR) * HOUR;
  // the hours the window touches, and the end of the last, so that a stepped line draws that hour too
  const times = Array.from({ length: Math.floor(to / HOUR) - first / HOUR + 2 }, (_, i) => (first + i * HOUR) / 1000);
  const values = new Map<string, number[]>();
  const byDeployment = new Map<string, number>();
  for (const row of result.rows) {
    const name = String(row[deployment]);
    const amount = Number(row[cost]);
    if (!values.has(name)) values.set(name, times.map(() => 0));
    const slot = times.indexOf(Date.parse(`${row[hour]}Z`) / 1000);
    if (slot >= 0) values.get(name)![slot] += amount;
    byDeployment.set(name, (byDeployment.get(name) ?? 0) + amount);
  }
  for (const line of values.values()) line[times.length - 1] = line[times.length - 2];
  const names = [...values.keys()].sort((a, b) => a.localeCompare(b));
  return {
    cost: {
      currency: result.rows.length ? String(result.rows[0][currency]) : "USD",
      times,
      lines: names.map((label) => ({ label, values: values.get(label)! })),
      byDeployment,
      total: [...byDeployment.values()].reduce((sum, amount) => sum + amount, 0),
    },
  };
}

/** An amount to three significant digits: a few thousand tokens cost a fraction of a cent. */
function money(amount: number, currency: string): string {
  return new Intl.NumberFormat("en-US", { style: "currency", currency, maximumSignificantDigits: 3 }).format(amount);
}

function deploymentOf(series: Metric["timeseries"][number]): string {
  return series.metadatavalues.find((m) => m.name.value.toLowerCase() === "modeldeploymentname")?.value ?? "(none)";
}

function linesOf(metric: Metric | undefined, pick: "total" | "average"): Line[] {
  return (metric?.timeseries ?? []).map((series) => ({
    label: deploymentOf(series),
    values: series.data.map((point) => point[pick] ?? (pick === "total" ? 0 : null)),
  }));
}

interface Totals {
  requests: number;
  prompt: number;
  generated: number;
  latencySum: number;
  latencyCount: number;
}

function totalsOf(counts: Metrics, latency: Metrics): Map<string, Totals> {
  const out = new Map<string, Totals>();
  const row = (name: string) => {
    if (!out.has(name)) out.set(name, { requests: 0, prompt: 0, generated: 0, latencySum: 0, latencyCount: 0 });
    return out.get(name)!;
  };
  const fields: Record<string, "requests" | "prompt" | "generated"> = {
    AzureOpenAIRequests: "requests", ProcessedPromptTokens: "prompt", GeneratedTokens: "generated",
  };
  for (const metric of counts.value) {
    for (const series of metric.timeseries) {
      row(deploymentOf(series))[fields[metric.name.value]] += series.data.reduce((sum, p) => sum + (p.total ?? 0), 0);
    }
  }
  for (const series of latency.value[0]?.timeseries ?? []) {
    const totals = row(deploymentOf(series));
    for (const point of series.data as { average?: number; count?: number }[]) {
      if (point.average !== undefined && point.count) {
        totals.latencySum += point.average * point.count;
        totals.latencyCount += point.count;
      }
    }
  }
  return out;
}

export function Monitoring({ account }: { account: AccountRef }) {
  const [range, setRange] = useState(RANGES[0]);
  const loaded = useLoad(() => load(account, range), [account.id, range]);
  const costed = useLoad(() => loadCost(account, range), [account.id, range]);
  const reload = () => {
    loaded.reload();
    costed.reload();
  };
  useEffect(() => {
    const timer = window.setInterval(reload, REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [loaded.reload, costed.reload]);
  const cost = costed.value?.cost;
  const currency = cost?.currency ?? "USD";
  const formatCost = useMemo(() => (amount: number) => money(amount, currency), [currency]);

  const view = useMemo(() => {
    if (!loaded.value) return undefined;
    const { counts, latency, start } = loaded.value;
    // the answer's own time stamps where it has a series; else the buckets the query asked for
    const stamped = counts.value.flatMap((m) => m.timeseries)[0]?.data.map((p) => Date.parse(p.timeStamp) / 1000);
    const times = stamped ?? Array.from({ length: Math.round(range.span / range.step) },
                                        (_, i) => (start + i * range.step) / 1000);
    const byName = (name: string, from: Metrics) => from.value.find((m) => m.name.value === name);
    return {
      times,
      charts: [
        ...COUNTS.map((m) => ({ ...m, lines: linesOf(byName(m.name, counts), "total") })),
        { ...LATENCY, title: `${LATENCY.title} (average)`, lines: linesOf(byName(LATENCY.name, latency), "average") },
      ],
      totals: totalsOf(counts, latency),
    };
  }, [loaded.value]);
  // every deployment with traffic or cost in the window (a provisioned one costs its hours without traffic)
  const rows = useMemo(() => {
    if (!view) return [];
    const names = new Set([...view.totals.keys(), ...(cost?.byDeployment.keys() ?? [])]);
    return [...names].sort((a, b) => a.localeCompare(b)).map((name) => [name, view.totals.get(name)] as const);
  }, [view, cost]);

  return (
    <main>
      <Section title={`Monitoring of ${account.name}`} actions={
        <span class="actions">
          {RANGES.map((r) => (
            <button key={r.label} type="button" class={r === range ? "primary" : ""} aria-pressed={r === range}
                    onClick={() => setRange(r)}>{r.label}</button>
          ))}
          <button type="button" onClick={reload} disabled={loaded.loading || costed.loading}>Refresh</button>
        </span>}>
        <ErrorLine error={loaded.error} />
        <ErrorLine error={costed.error} />
        {view && (
          <table class="totals" aria-label="Totals per deployment">
            <thead><tr><th>Deployment</th><th>Requests</th><th>Prompt tokens</th><th>Generated tokens</th>
              <th>Average time to response</th><th>Cost{cost ? ` (${cost.currency})` : ""}</th></tr></thead>
            <tbody>
              {rows.length === 0 && <tr><td colSpan={6} class="hint">No traffic in this period.</td></tr>}
              {rows.map(([name, t]) => (
                <tr key={name} data-deployment={name}>
                  <td>{name}</td>
                  <td data-metric="AzureOpenAIRequests">{t?.requests ?? 0}</td>
                  <td data-metric="ProcessedPromptTokens">{t?.prompt ?? 0}</td>
                  <td data-metric="GeneratedTokens">{t?.generated ?? 0}</td>
                  <td data-metric="AzureOpenAITimeToResponse">
                    {t?.latencyCount ? `${Math.round(t.latencySum / t.latencyCount)} ms` : ""}</td>
                  <td data-metric="Cost" data-amount={cost ? cost.byDeployment.get(name) ?? 0 : undefined}>
                    {cost ? money(cost.byDeployment.get(name) ?? 0, cost.currency) : ""}</td>
                </tr>
              ))}
            </tbody>
            {cost && (
              <tfoot><tr><th colSpan={5}>Cost of the period</th>
                <td data-cost-total={cost.total}>{money(cost.total, cost.currency)} {cost.currency}</td></tr></tfoot>
            )}
          </table>
        )}
        {costed.value?.denied && (
          <p class="hint" data-cost-denied>Cost is not shown: reading it takes a role such as Reader or Cost
            Management Reader on the account or above ({costed.value.denied}).</p>
        )}
        <p class="hint">Metrics of the data plane, per deployment, at {range.interval} grain; batch lines are not
          counted. Cost per deployment and hour, from Cost Management's query at the server's prices: tokens at their
          deployment type's price (batch at half), provisioned deployments by the PTU-hour.</p>
      </Section>
      {view && (
        <div class="charts">
          {cost && (
            <div class="card" data-cost-chart>
              <LineChart title={`Cost per hour (${cost.currency})`} unit={cost.currency} times={cost.times}
                         lines={cost.lines} stepped format={formatCost} />
              {cost.lines.length === 0 && <p class="hint">No cost in this period.</p>}
            </div>
          )}
          {view.charts.map((chart) => (
            <div class="card" key={chart.name} data-metric-chart={chart.name}>
              <LineChart title={chart.title} unit={chart.unit} times={view.times} lines={chart.lines} />
              {chart.lines.length === 0 && <p class="hint">No {chart.title.toLowerCase()} in this period.</p>}
            </div>
          ))}
        </div>
      )}
    </main>
  );
}
