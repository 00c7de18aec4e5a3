// The VM's serial console in xterm.js over the agent's WebSocket route
// (GET /v1/vms/{name}/console with Upgrade: websocket, api/openapi.yaml):
// binary messages both ways. The browser sends the session cookie with the
// handshake; the agent checks the page's Origin.
import type { Terminal } from "@xterm/xterm";

/** Console is an open console; close ends it. */
export interface Console {
  close(): void;
}

/** openConsole shows VM name's console in el; status gets its state. */
export async function openConsole(el: HTMLElement, name: string, status: (s: string) => void): Promise<Console> {
  const [{ Terminal }, { FitAddon }] = await Promise.all([import("@xterm/xterm"), import("@xterm/addon-fit"), import("@xterm/xterm/css/xterm.css")]);
  const term: Terminal = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const enc = new TextEncoder();
  let ws: WebSocket;
  let closed = false;
  // A VM just started may not have its console yet (the VMM is still
  // coming up, in its jail): a lost connection is tried again each second
  // until the page closes the console.
  const connect = () => {
    ws = new WebSocket(`${proto}//${location.host}/v1/vms/${encodeURIComponent(name)}/console`);
    ws.binaryType = "arraybuffer";
    status("connecting");
    ws.onopen = () => {
      status("connected");
      term.focus();
    };
    ws.onmessage = (m) => {
      term.write(typeof m.data === "string" ? m.data : new Uint8Array(m.data as ArrayBuffer));
    };
    ws.onclose = (e) => {
      status(e.reason ? `closed: ${e.reason}` : "closed");
      if (!closed) setTimeout(() => !closed && connect(), 1000);
    };
  };
  connect();
  const input = term.onData((d) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
  });
  const resize = () => fit.fit();
  window.addEventListener("resize", resize);
  // For the end-to-end tests: what the terminal shows, as text.
  el.dataset.console = "open";
  (el as HTMLElement & { consoleText?: () => string }).consoleText = () => {
    const b = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? "");
    return lines.join("\n");
  };
  return {
    close() {
      closed = true;
      window.removeEventListener("resize", resize);
      input.dispose();
      ws.close();
      term.dispose();
    },
  };
}
