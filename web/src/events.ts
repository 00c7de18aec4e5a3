// The live VM events of GET /v1/events (server-sent events), kept for the
// whole session so the overview shows what happened while on other pages.
import type { ApiError } from "./api";
import type { VMEvent } from "./types";

/** EventEntry is one event as received. */
export interface EventEntry {
  at: Date;
  kind: string;
  ev: VMEvent;
}

// keep bounds the events held: enough for the events page's history, and
// small next to the 1,000-VM list.
const keep = 500;
const recent: EventEntry[] = [];
const listeners = new Set<(e: EventEntry) => void>();
let source: EventSource | null = null;
let streamState = "closed";
const stateListeners = new Set<(s: string) => void>();

function setState(s: string): void {
  streamState = s;
  for (const l of stateListeners) l(s);
}

/** eventStreamState is "open", "connecting" (the browser retries) or "closed". */
export function eventStreamState(): string {
  return streamState;
}

/** onStreamState calls f when the stream's state changes, until the returned function is called. */
export function onStreamState(f: (s: string) => void): () => void {
  stateListeners.add(f);
  return () => stateListeners.delete(f);
}

/** startEvents opens the event stream (once). */
export function startEvents(_onAuthLost: (e: ApiError) => void): void {
  if (source) return;
  source = new EventSource("/v1/events");
  setState("connecting");
  source.onopen = () => setState("open");
  source.onerror = () => setState(source?.readyState === EventSource.CLOSED ? "closed" : "connecting");
  // cluster: HA restarts, evacuations, balancing moves, host changes.
  for (const kind of ["spec", "status", "deleted", "cluster"]) {
    source.addEventListener(kind, (m) => {
      let ev: VMEvent;
      try {
        ev = JSON.parse((m as MessageEvent).data);
      } catch {
        return;
      }
      const at = kind === "cluster" && ev.cluster?.time ? new Date(ev.cluster.time) : new Date();
      const e = { at, kind, ev: { ...ev, vm: ev.vm || ev.cluster?.vm || "" } };
      recent.unshift(e);
      recent.length = Math.min(recent.length, keep);
      for (const l of listeners) l(e);
    });
  }
}

/** stopEvents closes the stream and forgets its events (at logout). */
export function stopEvents(): void {
  source?.close();
  source = null;
  recent.length = 0;
  setState("closed");
}

/** recentEvents are the latest events, newest first. */
export function recentEvents(): EventEntry[] {
  return recent.slice();
}

/** onEvent calls f for every new event until the returned function is called. */
export function onEvent(f: (e: EventEntry) => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}
