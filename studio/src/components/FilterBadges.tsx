// A message's content-filter annotations: one badge per category, red where the filter blocked.

import type { FilterResults, Severity } from "../api/data";

export interface Annotation {
  filtered: boolean;
  severity?: Severity;
  detected?: boolean;
  message?: string;
}

export type Annotations = Record<string, Annotation>;

const ORDER: Severity[] = ["safe", "low", "medium", "high"];

/** Folds one chunk's results into those seen so far: a stream annotates each window it checked, and the message
 * shows the worst of them. */
export function merge(seen: Annotations, results: FilterResults | undefined): Annotations {
  if (!results) return seen;
  const out: Annotations = { ...seen };
  for (const [category, value] of Object.entries(results)) {
    if (!value) continue;
    if (Array.isArray(value)) { // custom blocklists: one entry per list
      const filtered = value.some((entry) => entry.filtered);
      const before = out[category];
      out[category] = { filtered: filtered || !!before?.filtered, detected: filtered || !!before?.detected };
      continue;
    }
    const entry = value as Annotation & { code?: string };
    if (category === "error") {
      out.error = { filtered: false, message: `${entry.code ?? "error"}: ${entry.message ?? ""}` };
      continue;
    }
    const before = out[category];
    const severity = [before?.severity, entry.severity]
      .filter((s): s is Severity => !!s)
      .sort((a, b) => ORDER.indexOf(b) - ORDER.indexOf(a))[0];
    out[category] = {
      filtered: !!entry.filtered || !!before?.filtered,
      ...(severity ? { severity } : {}),
      ...(entry.detected !== undefined || before?.detected !== undefined
        ? { detected: !!entry.detected || !!before?.detected } : {}),
    };
  }
  return out;
}

function describe(annotation: Annotation): string {
  if (annotation.message) return annotation.message;
  const found = annotation.severity ?? (annotation.detected === undefined ? undefined
    : annotation.detected ? "detected" : "not detected");
  if (!found) return annotation.filtered ? "filtered" : "not filtered";
  return annotation.filtered ? `${found}, filtered` : found;
}

export function FilterBadges({ annotations, label }: { annotations?: Annotations; label: string }) {
  const entries = Object.entries(annotations ?? {});
  if (!entries.length) return null;
  return (
    <ul class="badges" aria-label={label}>
      {entries.map(([category, annotation]) => (
        <li key={category} class={`badge${annotation.filtered ? " filtered" : ""}${annotation.message ? " warn" : ""}`}
            data-category={category}>
          {category.replace(/_/g, " ")}: {describe(annotation)}
        </li>
      ))}
    </ul>
  );
}
