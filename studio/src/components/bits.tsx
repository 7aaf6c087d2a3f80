// Small pieces every page uses.

import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";

export function ErrorLine({ error }: { error?: string }) {
  return error ? <p class="error" role="alert">{error}</p> : null;
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren;
                                                         actions?: ComponentChildren }) {
  return (
    <section class="card">
      <header class="card-head">
        <h2>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

/** A button that asks once more, inline, before doing something that cannot be undone. */
export function ConfirmButton({ label, confirm, onConfirm, disabled }: { label: string; confirm: string;
                                                                         onConfirm: () => void; disabled?: boolean }) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return <button type="button" class="danger" disabled={disabled} onClick={() => setAsking(true)}>{label}</button>;
  }
  return (
    <span class="confirm">
      <button type="button" class="danger" onClick={() => { setAsking(false); onConfirm(); }}>{confirm}</button>
      <button type="button" onClick={() => setAsking(false)}>Cancel</button>
    </span>
  );
}

export function when(seconds: number | undefined): string {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}
