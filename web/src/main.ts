// The govisor web console (issue 14): a hash-routed single page over the
// agent's REST API, served by the agent at /ui/.
import "./style.css";
import { api, ApiError, setCSRF, type SessionInfo } from "./api";
import { h, replace } from "./dom";
import { startEvents, stopEvents } from "./events";
import { loginPage } from "./pages/login";
import { overviewPage } from "./pages/overview";
import { vmListPage } from "./pages/vms";
import { vmPage } from "./pages/vm";
import { createPage } from "./pages/create";
import { networksPage, poolsPage } from "./pages/lists";
import { clusterPage } from "./pages/cluster";
import { hostPage } from "./pages/host";
import { eventsPage } from "./pages/events";
import { poolPage } from "./pages/storage";
import { reportsPage } from "./pages/reports";

/** A page renders into main and returns what to do when it is left. */
export type Page = (main: HTMLElement, arg: string) => (() => void) | void;

const routes: [RegExp, Page][] = [
  [/^\/?$/, overviewPage],
  [/^\/vms(?:\?(.*))?$/, vmListPage],
  [/^\/vms\/([^/]+)$/, vmPage],
  [/^\/create$/, createPage],
  [/^\/networks$/, networksPage],
  [/^\/pools$/, poolsPage],
  [/^\/pools\/([^/]+)$/, poolPage],
  [/^\/hosts\/([^/]+)$/, hostPage],
  [/^\/cluster$/, clusterPage],
  [/^\/events$/, eventsPage],
  [/^\/reports$/, reportsPage],
];

const app = document.getElementById("app")!;
let leave: (() => void) | void;
let session: { open: boolean; expires?: number } | null = null;

function begin(info: SessionInfo): void {
  setCSRF(info.csrfToken);
  session = { open: !!info.open, expires: info.expires ? Date.parse(info.expires) : undefined };
  startEvents(onAuthLost);
}

function nav(): HTMLElement {
  const link = (href: string, text: string) => h("a", { href, "data-nav": href }, text);
  return h(
    "nav",
    {},
    h("span", { class: "brand" }, "govisor"),
    link("#/", "Overview"),
    link("#/vms", "VMs"),
    link("#/create", "Create VM"),
    link("#/cluster", "Cluster"),
    link("#/networks", "Networks"),
    link("#/pools", "Storage"),
    link("#/events", "Events"),
    link("#/reports", "Reports"),
    session?.open
      ? null
      : h("button", { class: "logout", onclick: () => logout() }, "Log out"),
  );
}

async function logout(): Promise<void> {
  try {
    await api.logout();
  } finally {
    session = null;
    stopEvents();
    showLogin("Logged out.");
  }
}

function showLogin(message: string): void {
  if (leave) leave();
  leave = undefined;
  loginPage(app, message, (info) => {
    begin(info);
    location.hash = location.hash || "#/";
    render();
  });
}

/** onAuthLost sends the user back to the login page, saying why. */
export function onAuthLost(err: ApiError): void {
  // The first refusal says why; the page's other requests in flight are
  // refused too and must not replace that message.
  if (!session) return;
  const expired = session.expires !== undefined && Date.now() >= session.expires;
  session = null;
  stopEvents();
  // A browser that already dropped the cookie sends none, and the agent
  // can only say a token is required: the expiry we were told explains it.
  showLogin(expired && !/expired/.test(err.message) ? "session expired: log in again" : err.message);
}

function render(): void {
  if (!session) return;
  if (leave) leave();
  leave = undefined;
  const path = location.hash.replace(/^#/, "");
  const main = h("main", {});
  replace(app, nav(), main);
  for (const a of app.querySelectorAll<HTMLAnchorElement>("nav a")) {
    const target = a.getAttribute("data-nav")!.replace(/^#/, "");
    if (target === "/" ? path === "/" || path === "" : path.startsWith(target)) a.classList.add("active");
  }
  for (const [re, page] of routes) {
    const m = re.exec(path);
    if (m) {
      leave = page(main, m[1] ? decodeURIComponent(m[1]) : "");
      return;
    }
  }
  replace(main, h("h1", {}, "Not found"), h("p", {}, `No page ${path}.`));
}

window.addEventListener("hashchange", render);
window.addEventListener("govisor:unauthorized", (e) => onAuthLost((e as CustomEvent<ApiError>).detail));

api
  .session()
  .then((info) => {
    begin(info);
    render();
  })
  .catch((err) => showLogin(err instanceof ApiError && err.status === 401 && !/not logged in/.test(err.message) ? err.message : ""));
