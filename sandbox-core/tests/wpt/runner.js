// The tail of every module the WPT conformance test builds (see main.rs):
// it runs one web-platform-tests file under testharness.js inside a tenant
// and answers with the results as JSON. The driver puts before it
//
//   const WPT = { file, timeoutMs, files: { "url/resources/x.json": "..." } };
//   function wptRun(hook) { <testharness.js> ; hook(); <META scripts> ; <test file> }
//
// so testharness.js, the helpers and the test share one function scope, run
// when a request comes (timers and promises only work inside a request, in
// Corral as in workerd) and need no `eval` (workerd refuses it). The same
// module runs under workerd (scripts/wpt-workerd) through `test`.

// What the harness reports, as testharness.js numbers it.
const STATUS = ["PASS", "FAIL", "TIMEOUT", "NOTRUN", "PRECONDITION_FAILED"];
const HARNESS = ["OK", "ERROR", "TIMEOUT", "PRECONDITION_FAILED"];

// `fetch` of the test's own data files (resources/*.json): tenants have no
// network, and the tests only fetch files next to them.
function dataFetch(input) {
  const base = "http://wpt.test/" + WPT.file;
  const url = new URL(String(input instanceof Request ? input.url : input), base);
  const path = url.pathname.slice(1);
  if (Object.prototype.hasOwnProperty.call(WPT.files, path)) {
    return Promise.resolve(new Response(WPT.files[path], { headers: { "content-type": "application/json" } }));
  }
  return Promise.reject(new TypeError(`the WPT runner has no ${path}`));
}

// Test names and messages may hold lone surrogates (encoding tests name
// their inputs): the results travel as UTF-8 JSON, so those become U+FFFD.
const wellFormed = (s) => (s == null ? null : String(s).toWellFormed());

async function runWpt() {
  if (typeof globalThis.self === "undefined") globalThis.self = globalThis;
  globalThis.GLOBAL = { isWindow: () => false, isWorker: () => false, isShadowRealm: () => false };
  globalThis.fetch = dataFetch;
  // A worker's `location` is its script's URL; tenants have none, and
  // common/subset-tests-by-key.js reads `location.search` (empty here: no
  // variant is selected, so every subtest runs).
  if (typeof globalThis.location === "undefined") {
    globalThis.location = new URL("http://wpt.test/" + WPT.file);
  }
  // Every runtime gets testharness.js's shell environment (results as
  // soon as the tests end): workerd's global is a ServiceWorkerGlobalScope,
  // whose environment would wait for an install event that never comes.
  for (const name of ["ServiceWorkerGlobalScope", "WorkerGlobalScope", "DedicatedWorkerGlobalScope", "SharedWorkerGlobalScope"]) {
    delete globalThis[name];
  }
  const results = [];
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const hook = () => {
    add_result_callback((t) => {
      results.push({ name: wellFormed(t.name), status: STATUS[t.status] ?? String(t.status), message: wellFormed(t.message) });
    });
    add_completion_callback((_tests, h) => finish({ status: HARNESS[h.status] ?? String(h.status), message: h.message ?? null }));
  };
  let hooked = false;
  let uncaught = null;
  try {
    wptRun(() => { hooked = true; hook(); });
  } catch (e) {
    uncaught = { status: "ERROR", message: `uncaught: ${e && e.stack ? e.stack : e}` };
  }
  let harness = uncaught;
  if (hooked) {
    // Tests registered before an uncaught error still run to the end.
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ status: "TIMEOUT", message: `no completion in ${WPT.timeoutMs} ms` }), WPT.timeoutMs);
    });
    const ended = await Promise.race([done, timeout]);
    clearTimeout(timer);
    harness = uncaught ?? ended;
  }
  return { file: WPT.file, harness, results };
}

export default {
  async fetch() {
    return new Response(JSON.stringify(await runWpt()), { headers: { "content-type": "application/json" } });
  },
  // workerd's `workerd test` entry.
  async test() {
    console.log("WPT-RESULT " + JSON.stringify(await runWpt()));
  },
};
