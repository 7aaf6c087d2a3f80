// Azure Monitor's metrics of the account, per deployment, for the last hour, day or week: requests, tokens and time
// to response, read from the Metrics API (`{account}/providers/Microsoft.Insights/metrics`).

import { useEffect, useMemo, useState } from "preact/hooks";
import { metrics, type Metric, type Metrics } from "../api/arm";
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
  useEffect(() => {
    const timer = window.setInterval(loaded.reload, REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [loaded.reload]);

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
      totals: [...totalsOf(counts, latency).entries()].sort(([a], [b]) => a.localeCompare(b)),
    };
  }, [loaded.value]);

  return (
    <main>
      <Section title={`Monitoring of ${account.name}`} actions={
        <span class="actions">
          {RANGES.map((r) => (
            <button key={r.label} type="button" class={r === range ? "primary" : ""} aria-pressed={r === range}
                    onClick={() => setRange(r)}>{r.label}</button>
          ))}
          <button type="button" onClick={loaded.reload} disabled={loaded.loading}>Refresh</button>
        </span>}>
        <ErrorLine error={loaded.error} />
        {view && (
          <table class="totals" aria-label="Totals per deployment">
            <thead><tr><th>Deployment</th><th>Requests</th><th>Prompt tokens</th><th>Generated tokens</th>
              <th>Average time to response</th></tr></thead>
            <tbody>
              {view.totals.length === 0 && <tr><td colSpan={5} class="hint">No traffic in this period.</td></tr>}
              {view.totals.map(([name, t]) => (
                <tr key={name} data-deployment={name}>
                  <td>{name}</td>
                  <td data-metric="AzureOpenAIRequests">{t.requests}</td>
                  <td data-metric="ProcessedPromptTokens">{t.prompt}</td>
                  <td data-metric="GeneratedTokens">{t.generated}</td>
                  <td data-metric="AzureOpenAITimeToResponse">
                    {t.latencyCount ? `${Math.round(t.latencySum / t.latencyCount)} ms` : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <p class="hint">Metrics of the data plane, per deployment, at {range.interval} grain; batch lines are not
          counted. Cost is not charted: Azurine prices usage with <code>azurine cost show</code> on the server, which
          no public API serves, so the token charts stand in for it.</p>
      </Section>
      {view && (
        <div class="charts">
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
