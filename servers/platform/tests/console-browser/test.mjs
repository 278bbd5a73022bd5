// The operator console in a real browser: Debian's chromium, headless, driven
// by playwright-core. Starts a real corral-server on loopback, then logs in,
// watches a gauge move under traffic, deploys and re-tiers an app from the
// Apps page, toggles maintenance (a tenant gets 503, the console keeps
// working), moves a simulator slider and checks the figure against the
// budget endpoint. Writes a screenshot of each page to docs/console/.
//
// usage: node test.mjs <corral-server binary> <screenshot dir>
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [bin, shots] = process.argv.slice(2);
if (!bin || !shots) throw new Error("usage: node test.mjs <corral-server> <screenshot dir>");
mkdirSync(shots, { recursive: true });

const CONFIG = `
base_domain = "corral.test"
default_tier = "small"
usage_flush_interval = "1s"
[thresholds]
ram = { fire = 1.0, rearm = 1.0 }
disk = { fire = 1.0, rearm = 1.0 }
[tiers.small]
compute_shares = 2
memory_bytes = 67108864
fuel_per_request = 1000000000
wall_clock = "5s"
burst = 0
max_body_bytes = 1024
max_bundle_bytes = 65536
idle_timeout = "10m"
max_streams = 2
[tiers.large]
compute_shares = 4
memory_bytes = 134217728
fuel_per_request = 1000000000
wall_clock = "5s"
burst = 0
max_body_bytes = 4096
max_bundle_bytes = 65536
idle_timeout = "10m"
max_streams = 4
`;

const step = (m) => console.log("console-test: " + m);
function check(cond, what) {
  if (!cond) throw new Error("FAILED: " + what);
  step("ok: " + what);
}

const dir = mkdtempSync(join(tmpdir(), "corral-console-"));
writeFileSync(join(dir, "corral.toml"), CONFIG);
const server = spawn(bin, ["--listen", "127.0.0.1:0", "--config", join(dir, "corral.toml"), "--data-dir", join(dir, "data"), "serve"], {
  env: { ...process.env, CORRAL_LOG: "warn" },
  stdio: ["ignore", "pipe", "inherit"],
});
const { base, token } = await new Promise((resolve, reject) => {
  let token = null;
  const lines = createInterface({ input: server.stdout });
  lines.on("line", (line) => {
    if (line.startsWith("admin token: ")) token = line.slice(13).split(/\s/)[0];
    const m = line.match(/^corral-server listening on (http:\/\/\S+)/);
    if (m) resolve({ base: m[1], token });
  });
  server.on("exit", (code) => reject(new Error("server exited: " + code)));
});
step("server at " + base);

const userData = mkdtempSync(join(tmpdir(), "corral-chromium-"));
// A fresh profile: launchPersistentContext passes it as --user-data-dir.
let browser = null;
let failed = null;
try {
  browser = await chromium.launchPersistentContext(userData, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const page = browser.pages()[0] || (await browser.newPage());
  const cspErrors = [];
  // The 401s of the session probe, the wrong token and the post-logout call are expected.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 401/.test(m.text())) cspErrors.push(m.text());
  });
  page.on("pageerror", (e) => cspErrors.push(String(e)));

  // Login.
  await page.goto(base + "/console/");
  await page.screenshot({ path: join(shots, "login.png") });
  await page.fill("#token", "wrong");
  await page.click("#login-form button");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.length > 0);
  check(await page.isVisible("#login"), "a wrong token stays on the login form");
  await page.fill("#token", token);
  await page.click("#login-form button");
  await page.waitForSelector("#page-overview:not([hidden])");
  const cookies = await browser.cookies();
  const c = cookies.find((x) => x.name === "corral_console");
  check(c && c.httpOnly && c.sameSite === "Strict" && c.path === "/console", "session cookie is HttpOnly, SameSite=Strict, Path=/console");

  // Gauges move while traffic flows.
  await page.waitForSelector("#live.on");
  const total = async () => Number(await page.textContent("#g-requests"));
  await page.waitForFunction(() => document.getElementById("g-requests").textContent !== "–");
  const before = await total();
  // Traffic until the gauges show it (at most 15 s).
  let sending = true;
  let sent = 0;
  const traffic = (async () => {
    const until = Date.now() + 15000;
    while (sending && Date.now() < until) { await fetch(base + "/apps/demo/").then((r) => r.text()); sent++; }
  })();
  await page.waitForFunction((b) => Number(document.getElementById("g-requests").textContent) >= b + 20
    && parseFloat(document.getElementById("g-rps").textContent) > 0, before, { timeout: 15000 });
  sending = false;
  await traffic;
  check((await total()) > before, "the requests gauge moved with the traffic (" + before + " -> " + (await total()) + ", " + sent + " sent)");
  check(parseFloat(await page.textContent("#g-rps")) > 0, "requests/s above zero while traffic flows");
  await page.screenshot({ path: join(shots, "overview.png"), fullPage: true });

  // Deploy from the Apps page.
  await page.click("a[href='#/apps']");
  await page.waitForSelector("#page-apps:not([hidden])");
  await page.fill("#deploy-name", "shop");
  await page.fill("#deploy-tier", "small");
  await page.fill("#deploy-code", 'export default { fetch() { return new Response("shop open\\n") } }');
  await page.click("#deploy-form button");
  await page.waitForFunction(() => document.getElementById("deploy-result").textContent.startsWith("deployed shop"));
  const body = await (await fetch(base + "/apps/shop/")).text();
  check(body === "shop open\n", "the deployed app answers");
  await page.click("#apps-refresh");
  await page.waitForSelector("#t-apps a[href='#/apps/shop']");
  await page.fill("#app-filter", "sho");
  const shown = await page.$$eval("#t-apps tbody tr", (rs) => rs.length);
  check(shown === 1, "the filter leaves the one matching app");
  await page.fill("#app-filter", "");
  await page.click("#t-apps th[data-key=requests]");
  await page.screenshot({ path: join(shots, "apps.png"), fullPage: true });

  // Its page: the usage chart shows the hour's requests (from the history endpoint).
  for (let i = 0; i < 5; i++) await fetch(base + "/apps/shop/").then((r) => r.text());
  await page.click("#t-apps a[href='#/apps/shop']");
  await page.waitForSelector("#page-app:not([hidden])");
  await page.waitForSelector("#app-chart rect.req");
  const charted = await page.$$eval("#app-chart rect.req", (rs) => rs.reduce((n, r) => n + Number(r.dataset.requests), 0));
  check(charted >= 6, "the usage chart shows the app's requests this hour (" + charted + ")");

  // Re-tier it on its page.
  await page.waitForFunction(() => document.getElementById("retier-tier").value === "small");
  await page.fill("#retier-tier", "large");
  await page.click("#retier-form button");
  await page.waitForFunction(() => document.getElementById("app-result").textContent === "now on tier large");
  const info = await (await fetch(base + "/api/apps/shop", { headers: { authorization: "Bearer " + token } })).json();
  check(info.tier === "large", "the app is on tier large in the API");
  await page.screenshot({ path: join(shots, "app.png"), fullPage: true });

  // Maintenance: tenants get 503, the console keeps working.
  await page.click("a[href='#/host']");
  await page.waitForSelector("#page-host:not([hidden])");
  await page.waitForFunction(() => document.getElementById("host-maint").textContent.includes("off"));
  await page.click("#maint-toggle");
  await page.waitForFunction(() => document.getElementById("host-maint").textContent.includes("ON"));
  const tenant = await fetch(base + "/apps/shop/");
  check(tenant.status === 503, "a tenant request gets 503 in maintenance (" + tenant.status + ")");
  await page.click("a[href='#/apps']");
  await page.waitForSelector("#t-apps a[href='#/apps/shop']");
  check(true, "the console's Apps page still loads in maintenance");
  await page.click("a[href='#/host']");
  await page.waitForFunction(() => document.getElementById("host-maint").textContent.includes("ON"));
  await page.click("#recalibrate");
  await page.waitForSelector("#recal-dialog[open]");
  const recalRows = await page.$$eval("#t-recal tbody tr", (rs) => rs.length);
  check(recalRows >= 4, "recalibrate asks first, showing now -> after");
  await page.screenshot({ path: join(shots, "host-recalibrate.png") });
  await page.click("#recal-confirm");
  await page.waitForFunction(() => document.getElementById("host-result").textContent === "recalibrated");
  await page.screenshot({ path: join(shots, "host.png"), fullPage: true });
  await page.click("#maint-toggle");
  await page.waitForFunction(() => document.getElementById("host-maint").textContent.includes("off"));
  check((await fetch(base + "/apps/shop/")).status === 200, "maintenance off: the tenant answers again");

  // Simulator: a slider -> the budget endpoint's figure.
  await page.click("a[href='#/simulator']");
  await page.waitForSelector("#page-simulator:not([hidden]) #sim-slots-out");
  await page.$eval("#sim-ram", (el) => { el.value = "16"; el.dispatchEvent(new Event("input", { bubbles: true })); });
  await page.$eval("#sim-cpus", (el) => { el.value = "8"; el.dispatchEvent(new Event("input", { bubbles: true })); });
  await page.waitForFunction(() => (document.getElementById("t-sim").dataset.query || "").startsWith("ram=" + 16 * 2 ** 30 + "&cpus=8&"));
  const q = await page.$eval("#t-sim", (t) => t.dataset.query);
  const shownSlots = Number(await page.textContent("#sim-slots-out"));
  const sim = await (await fetch(base + "/api/admin/simulate?" + q, { headers: { authorization: "Bearer " + token } })).json();
  check(shownSlots === sim.budget.runtime_slots, "the simulator shows the endpoint's runtime_slots for 16 GiB / 8 CPUs (" + shownSlots + ")");
  await page.fill("#sim-slots", "100000");
  await page.dispatchEvent("#sim-slots", "input");
  await page.waitForSelector("#sim-warnings .warn");
  check(true, "an override past the box shows a warning");
  await page.screenshot({ path: join(shots, "simulator.png"), fullPage: true });

  // Logout ends the session.
  await page.click("#logout");
  await page.waitForSelector("#login:not([hidden])");
  const after = await page.evaluate(() => fetch("/console/api/apps").then((r) => r.status));
  check(after === 401, "after logout the console API answers 401");
  check(cspErrors.length === 0, "no script or CSP errors in the page (" + cspErrors.join("; ") + ")");
} catch (e) {
  failed = e;
} finally {
  if (browser) await browser.close();
  server.kill("SIGTERM");
  rmSync(userData, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}
if (failed) {
  console.error(failed);
  process.exit(1);
}
step("all passed");
