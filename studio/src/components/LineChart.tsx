// A uPlot line chart of one metric, one line per deployment; `stepped` for amounts per bucket of time (each holds
// from its time to the next), `format` for the axis's values.

import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Line {
  label: string;
  values: (number | null)[];
}

const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#57606a"];

export function LineChart({ title, unit, times, lines, stepped, format }: {
  title: string; unit: string; times: number[]; lines: Line[]; stepped?: boolean; format?: (value: number) => string;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const options: uPlot.Options = {
      title,
      width: Math.max(element.clientWidth, 320),
      height: 220,
      series: [{}, ...lines.map((line, i) => ({
        label: line.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
        points: { show: !stepped && line.values.filter((v) => v !== null).length < 3 },
        ...(stepped ? { paths: uPlot.paths.stepped!({ align: 1 }) } : {}),
      }))],
      axes: [{}, { label: unit, size: format ? 90 : 60,
                   ...(format ? { values: (_: uPlot, splits: number[]) => splits.map(format) } : {}) }],
      scales: { x: { time: true } },
      legend: { live: false },
    };
    const plot = new uPlot(options, [times, ...lines.map((line) => line.values)], element);
    return () => plot.destroy();
  }, [title, unit, times, lines, stepped, format]);
  return <div class="chart" ref={box} data-title={title} />;
}
