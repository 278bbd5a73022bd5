// Corral's JavaScript prelude: the Workers-style web classes every tenant
// sees (Request, Response, Headers, URL, URLSearchParams, TextEncoder,
// TextDecoder, console, crypto, timers), written over a handful of host
// functions. It is compiled to QuickJS bytecode once per process and
// evaluated into every tenant runtime before the tenant's module.
//
// The host functions arrive on `globalThis.__corral_host`; this module takes
// them and deletes the global, so tenant code never sees them directly.
// The module's default export is the `internals` object the host drives.

const host = globalThis.__corral_host;
delete globalThis.__corral_host;

const define = (name, value) =>
  Object.defineProperty(globalThis, name, {
    value,
    writable: true,
    configurable: true,
    enumerable: false,
  });

// ---------------------------------------------------------------- bytes ----

function utf8Encode(s) {
  return host.encodeUtf8(String(s));
}

function utf8Decode(bytes, fatal) {
  return host.decodeUtf8(bytes, !!fatal);
}

// Copies any BufferSource into a fresh Uint8Array.
function copyBytes(src) {
  if (src instanceof ArrayBuffer) return new Uint8Array(src.slice(0));
  if (ArrayBuffer.isView(src)) {
    return new Uint8Array(
      src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength),
    );
  }
  throw new TypeError("expected an ArrayBuffer or an ArrayBuffer view");
}

function isBufferSource(v) {
  return v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

// ------------------------------------------------------ TextEncoder/Decoder --

class TextEncoder {
  get encoding() {
    return "utf-8";
  }
  encode(input = "") {
    return utf8Encode(input);
  }
  encodeInto(input, dest) {
    const bytes = utf8Encode(input);
    // Only write whole characters: back off to a UTF-8 boundary.
    let n = Math.min(bytes.length, dest.length);
    while (n > 0 && n < bytes.length && (bytes[n] & 0xc0) === 0x80) n--;
    dest.set(bytes.subarray(0, n));
    const read = utf8Decode(bytes.subarray(0, n), false).length;
    return { read, written: n };
  }
}

class TextDecoder {
  #fatal;
  #ignoreBOM;
  constructor(label = "utf-8", options = {}) {
    const l = String(label).trim().toLowerCase();
    if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") {
      throw new RangeError(`TextDecoder: unsupported encoding ${label}`);
    }
    this.#fatal = !!(options && options.fatal);
    this.#ignoreBOM = !!(options && options.ignoreBOM);
  }
  get encoding() {
    return "utf-8";
  }
  get fatal() {
    return this.#fatal;
  }
  get ignoreBOM() {
    return this.#ignoreBOM;
  }
  decode(input) {
    if (input === undefined) return "";
    let bytes =
      input instanceof Uint8Array && input.byteOffset === 0
        ? input
        : copyBytes(input);
    if (
      !this.#ignoreBOM &&
      bytes.length >= 3 &&
      bytes[0] === 0xef &&
      bytes[1] === 0xbb &&
      bytes[2] === 0xbf
    ) {
      bytes = bytes.subarray(3);
    }
    try {
      return utf8Decode(bytes, this.#fatal);
    } catch (e) {
      throw new TypeError("TextDecoder: the data is not valid UTF-8");
    }
  }
}

// ---------------------------------------------------------------- console --

function inspect(v, depth = 0) {
  if (typeof v === "string") return depth === 0 ? v : JSON.stringify(v);
  if (v === undefined) return "undefined";
  if (v === null) return "null";
  if (typeof v === "function") return `[Function ${v.name || "anonymous"}]`;
  if (typeof v === "symbol" || typeof v === "bigint") return v.toString();
  if (typeof v !== "object") return String(v);
  if (v instanceof Error) return v.stack ? `${v.name}: ${v.message}\n${v.stack}`.trimEnd() : `${v.name}: ${v.message}`;
  if (depth > 2) return Array.isArray(v) ? "[Array]" : "[Object]";
  if (Array.isArray(v)) return `[ ${v.map((x) => inspect(x, depth + 1)).join(", ")} ]`;
  if (v instanceof Uint8Array) return `Uint8Array(${v.length}) [ ${Array.from(v.subarray(0, 32)).join(", ")}${v.length > 32 ? ", ..." : ""} ]`;
  if (typeof v.toString === "function" && v.toString !== Object.prototype.toString) {
    if (v instanceof URL || v instanceof URLSearchParams) return v.toString();
  }
  try {
    const keys = Object.keys(v);
    if (keys.length === 0) return "{}";
    return `{ ${keys.map((k) => `${k}: ${inspect(v[k], depth + 1)}`).join(", ")} }`;
  } catch (_) {
    return String(v);
  }
}

function logger(prefix) {
  return (...args) => host.log(prefix + args.map((a) => inspect(a)).join(" "));
}

define("console", {
  log: logger(""),
  info: logger(""),
  debug: logger(""),
  trace: logger(""),
  warn: logger("warn: "),
  error: logger("error: "),
});

// ----------------------------------------------------------------- crypto --

function randomUUID() {
  const b = host.randomBytes(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

define("crypto", {
  getRandomValues(array) {
    if (
      !ArrayBuffer.isView(array) ||
      array instanceof Float32Array ||
      array instanceof Float64Array ||
      array instanceof DataView
    ) {
      throw new TypeError("crypto.getRandomValues: expected an integer typed array");
    }
    if (array.byteLength > 65536) {
      const e = new Error(
        `crypto.getRandomValues: ${array.byteLength} bytes requested; the limit is 65536`,
      );
      e.name = "QuotaExceededError";
      throw e;
    }
    const bytes = host.randomBytes(array.byteLength);
    new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(bytes);
    return array;
  },
  randomUUID,
});

// ----------------------------------------------------------------- timers --
// Timers belong to the request (its *scope*) that set them: the host fires
// them while it waits for that request's response, or for the next chunk of
// its streamed body, within its deadline, and drops the rest when the
// request (or its stream) ends. Requests to one tenant may interleave with
// its open streams, so each scope only ever sees its own timers.

let timerSeq = 0;
const timers = new Map();
// The scope whose code runs now: set by the host before every entry.
let currentScope = 0;

function addTimer(fn, ms, args, repeat) {
  if (typeof fn !== "function") throw new TypeError("timer callback must be a function");
  const delay = Math.max(0, Number(ms) || 0);
  const id = ++timerSeq;
  // Date.now() is whole milliseconds, truncated: the extra millisecond keeps
  // a timer from firing before `delay` has really passed.
  timers.set(id, { fn, args, delay, due: Date.now() + delay + 1, repeat, seq: id, scope: currentScope });
  return id;
}

define("setTimeout", (fn, ms, ...args) => addTimer(fn, ms, args, false));
define("setInterval", (fn, ms, ...args) => addTimer(fn, ms, args, true));
define("clearTimeout", (id) => void timers.delete(id));
define("clearInterval", (id) => void timers.delete(id));
define("queueMicrotask", (fn) => {
  if (typeof fn !== "function") throw new TypeError("queueMicrotask: expected a function");
  Promise.resolve().then(() => fn());
});

function earliestTimer(scope) {
  let best;
  for (const [id, t] of timers) {
    if (t.scope !== scope) continue;
    if (!best || t.due < best[1].due || (t.due === best[1].due && t.seq < best[1].seq)) {
      best = [id, t];
    }
  }
  return best;
}

function clearScopeTimers(scope) {
  for (const [id, t] of timers) if (t.scope === scope) timers.delete(id);
}

// ---------------------------------------------------------- URLSearchParams --

function formEncode(s) {
  return encodeURIComponent(s)
    .replace(/%20/g, "+")
    .replace(/[!'()~]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

function formDecode(s) {
  const t = s.replace(/\+/g, " ");
  try {
    return decodeURIComponent(t);
  } catch (_) {
    return t.replace(/%([0-9a-fA-F]{2})/g, (_m, h) => String.fromCharCode(parseInt(h, 16)));
  }
}

class URLSearchParams {
  #list = [];
  #url = null;
  constructor(init = "") {
    if (init instanceof URLSearchParams) {
      this.#list = init.#list.map(([k, v]) => [k, v]);
    } else if (typeof init === "object" && init !== null) {
      if (typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const p = Array.from(pair);
          if (p.length !== 2) throw new TypeError("URLSearchParams: each pair needs two items");
          this.#list.push([String(p[0]), String(p[1])]);
        }
      } else {
        for (const k of Object.keys(init)) this.#list.push([k, String(init[k])]);
      }
    } else {
      this.#parse(String(init));
    }
  }
  #parse(s) {
    this.#list = [];
    if (s.startsWith("?")) s = s.slice(1);
    for (const part of s.split("&")) {
      if (part === "") continue;
      const eq = part.indexOf("=");
      const k = eq < 0 ? part : part.slice(0, eq);
      const v = eq < 0 ? "" : part.slice(eq + 1);
      this.#list.push([formDecode(k), formDecode(v)]);
    }
  }
  static _attach(params, url, query) {
    params.#url = url;
    params.#parse(query);
  }
  static _reparse(params, query) {
    params.#parse(query);
  }
  #update() {
    if (this.#url) URL._setQueryFromParams(this.#url, this.toString());
  }
  get size() {
    return this.#list.length;
  }
  append(k, v) {
    this.#list.push([String(k), String(v)]);
    this.#update();
  }
  delete(k, v) {
    k = String(k);
    this.#list = this.#list.filter(([a, b]) => !(a === k && (v === undefined || b === String(v))));
    this.#update();
  }
  get(k) {
    k = String(k);
    const e = this.#list.find(([a]) => a === k);
    return e ? e[1] : null;
  }
  getAll(k) {
    k = String(k);
    return this.#list.filter(([a]) => a === k).map(([, b]) => b);
  }
  has(k, v) {
    k = String(k);
    return this.#list.some(([a, b]) => a === k && (v === undefined || b === String(v)));
  }
  set(k, v) {
    k = String(k);
    v = String(v);
    const i = this.#list.findIndex(([a]) => a === k);
    if (i < 0) {
      this.#list.push([k, v]);
    } else {
      this.#list[i][1] = v;
      this.#list = this.#list.filter(([a], j) => j <= i || a !== k);
    }
    this.#update();
  }
  sort() {
    this.#list = this.#list
      .map((e, i) => [e, i])
      .sort((x, y) => (x[0][0] < y[0][0] ? -1 : x[0][0] > y[0][0] ? 1 : x[1] - y[1]))
      .map(([e]) => e);
    this.#update();
  }
  forEach(cb, thisArg) {
    for (const [k, v] of this.#list) cb.call(thisArg, v, k, this);
  }
  *entries() {
    for (const [k, v] of this.#list) yield [k, v];
  }
  *keys() {
    for (const [k] of this.#list) yield k;
  }
  *values() {
    for (const [, v] of this.#list) yield v;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
  toString() {
    return this.#list.map(([k, v]) => `${formEncode(k)}=${formEncode(v)}`).join("&");
  }
  get [Symbol.toStringTag]() {
    return "URLSearchParams";
  }
}

// -------------------------------------------------------------------- URL --

const SPECIAL = { "http:": 80, "https:": 443, "ws:": 80, "wss:": 443, "ftp:": 21, "file:": null };

function pctEncode(s, keep) {
  let out = "";
  for (const ch of s) {
    if (keep.test(ch)) {
      out += ch;
    } else {
      for (const b of utf8Encode(ch)) out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
    }
  }
  return out;
}

const PATH_KEEP = /[A-Za-z0-9\-._~!$&'()*+,;=:@\/%\[\]]/;
const QUERY_KEEP = /[A-Za-z0-9\-._~!$&'()*+,;=:@\/?%\[\]{}|\\^`]/;
const FRAGMENT_KEEP = /[A-Za-z0-9\-._~!$&'()*+,;=:@\/?%\[\]{}|\\^#]/;
const USER_KEEP = /[A-Za-z0-9\-._~!$&'()*+,;=%]/;

function normalizePath(path, special) {
  const segs = path.split("/");
  const out = [];
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i];
    const low = s.toLowerCase();
    const last = i === segs.length - 1;
    if (s === ".." || low === "%2e%2e" || low === ".%2e" || low === "%2e.") {
      out.pop();
      if (last) out.push("");
    } else if (s === "." || low === "%2e") {
      if (last) out.push("");
    } else {
      out.push(s);
    }
  }
  return "/" + out.join("/");
}

function parseAuthority(rest, special) {
  // rest starts right after "//"; returns [user, pass, host, port, remainder]
  let end = rest.search(special ? /[\/\\?#]/ : /[\/?#]/);
  if (end < 0) end = rest.length;
  let auth = rest.slice(0, end);
  const remainder = rest.slice(end);
  let user = "";
  let pass = "";
  const at = auth.lastIndexOf("@");
  if (at >= 0) {
    const cred = auth.slice(0, at);
    auth = auth.slice(at + 1);
    const colon = cred.indexOf(":");
    user = pctEncode(colon < 0 ? cred : cred.slice(0, colon), USER_KEEP);
    pass = colon < 0 ? "" : pctEncode(cred.slice(colon + 1), USER_KEEP);
  }
  let host = auth;
  let port = "";
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(auth);
  if (m) {
    host = m[1];
    if (m[2] !== undefined) {
      if (!/^[0-9]*$/.test(m[2])) throw new TypeError(`Invalid URL port: ${m[2]}`);
      port = m[2] === "" ? "" : String(parseInt(m[2], 10));
      if (port !== "" && Number(port) > 65535) throw new TypeError(`Invalid URL port: ${m[2]}`);
    }
  }
  if (special) {
    if (/[\s<>^|%]/.test(host.replace(/%[0-9a-fA-F]{2}/g, ""))) {
      throw new TypeError(`Invalid URL host: ${host}`);
    }
    host = host.toLowerCase();
  }
  return [user, pass, host, port, remainder];
}

class URL {
  #protocol = "";
  #username = "";
  #password = "";
  #hostname = "";
  #port = "";
  #pathname = "";
  #search = "";
  #hash = "";
  #opaque = false;
  #hasAuthority = false;
  #params;

  constructor(input, base) {
    input = String(input).replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, "").replace(/[\t\n\r]/g, "");
    const m = /^([A-Za-z][A-Za-z0-9+\-.]*):(.*)$/s.exec(input);
    if (m) {
      this.#parseAbsolute(m[1].toLowerCase() + ":", m[2]);
    } else {
      if (base === undefined) throw new TypeError(`Invalid URL: ${input}`);
      const b = base instanceof URL ? base : new URL(base);
      this.#resolve(input, b);
    }
    this.#params = new URLSearchParams();
    URLSearchParams._attach(this.#params, this, this.#search);
  }

  static canParse(input, base) {
    try {
      new URL(input, base);
      return true;
    } catch (_) {
      return false;
    }
  }

  static parse(input, base) {
    try {
      return new URL(input, base);
    } catch (_) {
      return null;
    }
  }

  static _setQueryFromParams(url, query) {
    url.#search = query === "" ? "" : "?" + query;
  }

  #splitTail(rest) {
    // rest: path?query#fragment
    let hash = "";
    const h = rest.indexOf("#");
    if (h >= 0) {
      hash = rest.slice(h);
      rest = rest.slice(0, h);
    }
    let search = "";
    const q = rest.indexOf("?");
    if (q >= 0) {
      search = rest.slice(q);
      rest = rest.slice(0, q);
    }
    this.#search = search.length > 1 ? "?" + pctEncode(search.slice(1), QUERY_KEEP) : "";
    this.#hash = hash.length > 1 ? "#" + pctEncode(hash.slice(1), FRAGMENT_KEEP) : "";
    return rest;
  }

  #setPath(path) {
    const special = this.#protocol in SPECIAL;
    if (special) path = path.replace(/\\/g, "/");
    if (this.#opaque) {
      this.#pathname = path;
      return;
    }
    if (path === "" && special) path = "/";
    if (path !== "" && !path.startsWith("/")) path = "/" + path;
    this.#pathname = path === "" ? "" : normalizePath(pctEncode(path, PATH_KEEP), special);
  }

  #parseAbsolute(protocol, rest) {
    this.#protocol = protocol;
    const special = protocol in SPECIAL;
    if (special) rest = rest.replace(/^[\\\/]*/, (s) => (s.length >= 2 ? "//" : s));
    if (rest.startsWith("//") || (special && protocol !== "file:")) {
      if (!rest.startsWith("//")) rest = "//" + rest.replace(/^[\\\/]*/, "");
      const [user, pass, host, port, remainder] = parseAuthority(rest.slice(2), special);
      if (special && protocol !== "file:" && host === "") throw new TypeError(`Invalid URL: ${protocol}${rest}`);
      this.#username = user;
      this.#password = pass;
      this.#hostname = host;
      this.#port = port !== "" && SPECIAL[protocol] === Number(port) ? "" : port;
      this.#hasAuthority = true;
      this.#setPath(this.#splitTail(remainder));
    } else if (rest.startsWith("/")) {
      this.#setPath(this.#splitTail(rest));
    } else {
      this.#opaque = true;
      this.#pathname = this.#splitTail(rest);
    }
  }

  #resolve(input, b) {
    if (b.#opaque) {
      if (input.startsWith("#")) {
        this.#copy(b);
        this.#splitTail(input);
        this.#search = b.#search;
        return;
      }
      throw new TypeError(`Invalid URL: ${input}`);
    }
    const special = b.#protocol in SPECIAL;
    if (special) input = input.replace(/\\/g, "/");
    if (input.startsWith("//")) {
      this.#parseAbsolute(b.#protocol, input);
      return;
    }
    this.#copy(b);
    if (input === "") {
      this.#hash = "";
      return;
    }
    if (input.startsWith("#")) {
      this.#splitTail(input);
      this.#search = b.#search;
      return;
    }
    if (input.startsWith("?")) {
      this.#splitTail(input);
      return;
    }
    const path = this.#splitTail(input);
    if (path.startsWith("/")) {
      this.#setPath(path);
    } else {
      const dir = b.#pathname.slice(0, b.#pathname.lastIndexOf("/") + 1) || "/";
      this.#setPath(dir + path);
    }
  }

  #copy(b) {
    this.#protocol = b.#protocol;
    this.#username = b.#username;
    this.#password = b.#password;
    this.#hostname = b.#hostname;
    this.#port = b.#port;
    this.#pathname = b.#pathname;
    this.#search = b.#search;
    this.#hash = b.#hash;
    this.#opaque = b.#opaque;
    this.#hasAuthority = b.#hasAuthority;
  }

  get protocol() {
    return this.#protocol;
  }
  set protocol(v) {
    v = String(v).replace(/:.*$/, "").toLowerCase() + ":";
    if (/^[a-z][a-z0-9+\-.]*:$/.test(v) && (v in SPECIAL) === (this.#protocol in SPECIAL)) {
      this.#protocol = v;
      if (SPECIAL[v] === Number(this.#port)) this.#port = "";
    }
  }
  get username() {
    return this.#username;
  }
  set username(v) {
    if (this.#hasAuthority) this.#username = pctEncode(String(v), USER_KEEP);
  }
  get password() {
    return this.#password;
  }
  set password(v) {
    if (this.#hasAuthority) this.#password = pctEncode(String(v), USER_KEEP);
  }
  get hostname() {
    return this.#hostname;
  }
  set hostname(v) {
    if (!this.#opaque) this.#hostname = String(v).toLowerCase();
  }
  get port() {
    return this.#port;
  }
  set port(v) {
    v = String(v);
    if (v === "") {
      this.#port = "";
      return;
    }
    const m = /^[0-9]+/.exec(v);
    if (m && Number(m[0]) <= 65535) {
      this.#port = SPECIAL[this.#protocol] === Number(m[0]) ? "" : String(Number(m[0]));
    }
  }
  get host() {
    return this.#port === "" ? this.#hostname : `${this.#hostname}:${this.#port}`;
  }
  set host(v) {
    if (this.#opaque) return;
    const [, , host, port] = parseAuthority(String(v), this.#protocol in SPECIAL);
    this.#hostname = host;
    if (port !== "") this.#port = SPECIAL[this.#protocol] === Number(port) ? "" : port;
  }
  get origin() {
    if (this.#protocol in SPECIAL && this.#protocol !== "file:") {
      return `${this.#protocol}//${this.host}`;
    }
    return "null";
  }
  get pathname() {
    return this.#pathname;
  }
  set pathname(v) {
    if (!this.#opaque) this.#setPath(String(v));
  }
  get search() {
    return this.#search === "?" ? "" : this.#search;
  }
  set search(v) {
    v = String(v);
    if (v.startsWith("?")) v = v.slice(1);
    this.#search = v === "" ? "" : "?" + pctEncode(v, QUERY_KEEP);
    URLSearchParams._reparse(this.#params, this.#search);
  }
  get searchParams() {
    return this.#params;
  }
  get hash() {
    return this.#hash === "#" ? "" : this.#hash;
  }
  set hash(v) {
    v = String(v);
    if (v.startsWith("#")) v = v.slice(1);
    this.#hash = v === "" ? "" : "#" + pctEncode(v, FRAGMENT_KEEP);
  }
  get href() {
    let s = this.#protocol;
    if (this.#hasAuthority) {
      s += "//";
      if (this.#username !== "" || this.#password !== "") {
        s += this.#username;
        if (this.#password !== "") s += ":" + this.#password;
        s += "@";
      }
      s += this.host;
    }
    return s + this.#pathname + this.#search + this.#hash;
  }
  set href(v) {
    const u = new URL(v);
    this.#copy(u);
    URLSearchParams._reparse(this.#params, this.#search);
  }
  toString() {
    return this.href;
  }
  toJSON() {
    return this.href;
  }
  get [Symbol.toStringTag]() {
    return "URL";
  }
}

// ---------------------------------------------------------------- Headers --

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function normName(name) {
  name = String(name);
  if (!TOKEN.test(name)) throw new TypeError(`Invalid header name: ${name}`);
  return name.toLowerCase();
}

function normValue(value) {
  value = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  if (/[\0\r\n]/.test(value)) throw new TypeError("Invalid header value");
  return value;
}

class Headers {
  #map = new Map(); // lowercased name -> array of values
  constructor(init) {
    if (init === undefined || init === null) return;
    if (init instanceof Headers) {
      for (const [k, vs] of init.#map) this.#map.set(k, vs.slice());
    } else if (typeof init[Symbol.iterator] === "function") {
      for (const pair of init) {
        const p = Array.from(pair);
        if (p.length !== 2) throw new TypeError("Headers: each pair needs two items");
        this.append(p[0], p[1]);
      }
    } else if (typeof init === "object") {
      for (const k of Object.keys(init)) this.append(k, init[k]);
    } else {
      throw new TypeError("Headers: unsupported init");
    }
  }
  append(name, value) {
    const k = normName(name);
    const v = normValue(value);
    const vs = this.#map.get(k);
    if (vs) vs.push(v);
    else this.#map.set(k, [v]);
  }
  set(name, value) {
    this.#map.set(normName(name), [normValue(value)]);
  }
  get(name) {
    const vs = this.#map.get(normName(name));
    return vs ? vs.join(", ") : null;
  }
  getSetCookie() {
    return (this.#map.get("set-cookie") || []).slice();
  }
  has(name) {
    return this.#map.has(normName(name));
  }
  delete(name) {
    this.#map.delete(normName(name));
  }
  forEach(cb, thisArg) {
    for (const [k, v] of this.entries()) cb.call(thisArg, v, k, this);
  }
  *entries() {
    const names = Array.from(this.#map.keys()).sort();
    for (const k of names) {
      const vs = this.#map.get(k);
      if (k === "set-cookie") for (const v of vs) yield [k, v];
      else yield [k, vs.join(", ")];
    }
  }
  *keys() {
    for (const [k] of this.entries()) yield k;
  }
  *values() {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
  // Every (name, value) as sent on the wire: one entry per appended value.
  static _wirePairs(h) {
    const out = [];
    for (const [k, vs] of h.#map) for (const v of vs) out.push(k, v);
    return out;
  }
  get [Symbol.toStringTag]() {
    return "Headers";
  }
}

// ------------------------------------------------------------------- Body --

// Returns [bytes or null, default content-type or null].
function extractBody(body) {
  if (body === undefined || body === null) return [null, null];
  if (typeof body === "string") return [utf8Encode(body), "text/plain;charset=UTF-8"];
  if (isBufferSource(body)) return [copyBytes(body), null];
  if (body instanceof URLSearchParams) {
    return [utf8Encode(body.toString()), "application/x-www-form-urlencoded;charset=UTF-8"];
  }
  if (typeof ReadableStream !== "undefined" && body instanceof ReadableStream) {
    throw new TypeError("streaming bodies are not supported");
  }
  return [utf8Encode(String(body)), "text/plain;charset=UTF-8"];
}

const EMPTY = new Uint8Array(0);

class Body {
  #bytes = null;
  #used = false;
  _initBody(body, headers) {
    const [bytes, type] = extractBody(body);
    this.#bytes = bytes;
    if (type !== null && !headers.has("content-type")) headers.set("content-type", type);
  }
  _setBytes(bytes) {
    this.#bytes = bytes;
  }
  _peekBytes() {
    return this.#bytes;
  }
  // The body's ReadableStream when it is streamed, else null.
  static _streamOf(_body) {
    return null;
  }
  #consume() {
    if (this.#used) return Promise.reject(new TypeError("Body has already been used"));
    this.#used = true;
    return Promise.resolve(this.#bytes === null ? EMPTY : this.#bytes);
  }
  get bodyUsed() {
    return this.#used;
  }
  get body() {
    return null;
  }
  async arrayBuffer() {
    const b = await this.#consume();
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  }
  async bytes() {
    return new Uint8Array(await this.arrayBuffer());
  }
  async text() {
    return utf8Decode(await this.#consume(), false);
  }
  async json() {
    return JSON.parse(await this.text());
  }
  async formData() {
    throw new TypeError("formData() is not supported");
  }
  async blob() {
    throw new TypeError("blob() is not supported");
  }
}

// ---------------------------------------------------------------- Request --

const METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"];

class Request extends Body {
  #method;
  #url;
  #headers;
  constructor(input, init = {}) {
    super();
    init = init || {};
    let body = init.body;
    if (input instanceof Request) {
      this.#method = init.method !== undefined ? String(init.method) : input.#method;
      this.#url = input.#url;
      this.#headers = new Headers(init.headers !== undefined ? init.headers : input.#headers);
      if (body === undefined) {
        const b = input._peekBytes();
        body = b === null ? null : b;
      }
    } else {
      this.#url = new URL(String(input)).href;
      this.#method = init.method !== undefined ? String(init.method) : "GET";
      this.#headers = new Headers(init.headers);
    }
    const up = this.#method.toUpperCase();
    if (METHODS.includes(up)) this.#method = up;
    if (!TOKEN.test(this.#method)) throw new TypeError(`Invalid method: ${this.#method}`);
    if ((this.#method === "GET" || this.#method === "HEAD") && body !== undefined && body !== null) {
      throw new TypeError("Request with GET/HEAD method cannot have body.");
    }
    this._initBody(body, this.#headers);
  }
  get method() {
    return this.#method;
  }
  get url() {
    return this.#url;
  }
  get headers() {
    return this.#headers;
  }
  get redirect() {
    return "follow";
  }
  get signal() {
    return undefined;
  }
  clone() {
    if (this.bodyUsed) throw new TypeError("Body has already been used");
    return new Request(this);
  }
  get [Symbol.toStringTag]() {
    return "Request";
  }
}

// --------------------------------------------------------------- Response --

const STATUS_TEXT = {
  200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently",
  302: "Found", 303: "See Other", 304: "Not Modified", 307: "Temporary Redirect",
  308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
  404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
  418: "I'm a teapot", 429: "Too Many Requests", 500: "Internal Server Error",
  502: "Bad Gateway", 503: "Service Unavailable",
};

class Response extends Body {
  #status;
  #statusText;
  #headers;
  constructor(body = null, init = {}) {
    super();
    init = init || {};
    const status = init.status === undefined ? 200 : Number(init.status);
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new RangeError(`Response status ${init.status} is outside 200..599`);
    }
    this.#status = status;
    this.#statusText = init.statusText === undefined ? "" : String(init.statusText);
    this.#headers = new Headers(init.headers);
    if ((status === 204 || status === 205 || status === 304) && body !== null && body !== undefined) {
      throw new TypeError(`Response with status ${status} cannot have a body`);
    }
    this._initBody(body, this.#headers);
  }
  static json(data, init = {}) {
    const text = JSON.stringify(data);
    if (text === undefined) throw new TypeError("Response.json: value is not JSON-serializable");
    const headers = new Headers(init && init.headers);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    return new Response(text, { ...(init || {}), headers });
  }
  static redirect(url, status = 302) {
    if (![301, 302, 303, 307, 308].includes(status)) {
      throw new RangeError(`Invalid redirect status ${status}`);
    }
    return new Response(null, { status, headers: { location: new URL(String(url)).href } });
  }
  static error() {
    throw new TypeError("Response.error() is not supported");
  }
  get status() {
    return this.#status;
  }
  get statusText() {
    return this.#statusText || STATUS_TEXT[this.#status] || "";
  }
  get ok() {
    return this.#status >= 200 && this.#status <= 299;
  }
  get headers() {
    return this.#headers;
  }
  get redirected() {
    return false;
  }
  get type() {
    return "default";
  }
  get url() {
    return "";
  }
  clone() {
    if (this.bodyUsed) throw new TypeError("Body has already been used");
    const r = new Response(null, {
      status: this.#status,
      statusText: this.#statusText,
      headers: this.#headers,
    });
    r._setBytes(this._peekBytes());
    return r;
  }
  get [Symbol.toStringTag]() {
    return "Response";
  }
}

define("TextEncoder", TextEncoder);
define("TextDecoder", TextDecoder);
define("URLSearchParams", URLSearchParams);
define("URL", URL);
define("Headers", Headers);
define("Request", Request);
define("Response", Response);

// ---------------------------------------------------------------- env.KV --

function kvValue(value) {
  if (typeof value === "string") return utf8Encode(value);
  if (isBufferSource(value)) return copyBytes(value);
  throw new TypeError("KV.put: value must be a string, ArrayBuffer or ArrayBuffer view");
}

const KV = Object.freeze({
  async get(key, options) {
    const type = typeof options === "string" ? options : (options && options.type) || "text";
    const bytes = host.kvGet(String(key));
    if (bytes === null || bytes === undefined) return null;
    switch (type) {
      case "text":
        return utf8Decode(bytes, false);
      case "json":
        return JSON.parse(utf8Decode(bytes, false));
      case "arrayBuffer":
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      case "bytes":
        return bytes;
      default:
        throw new TypeError(`KV.get: unsupported type ${type}`);
    }
  },
  async put(key, value) {
    host.kvPut(String(key), kvValue(value));
  },
  async delete(key) {
    host.kvDelete(String(key));
  },
  async list(options = {}) {
    const prefix = options && options.prefix !== undefined ? String(options.prefix) : "";
    const limit = options && options.limit !== undefined ? Number(options.limit) : 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new RangeError("KV.list: limit must be an integer in 1..1000");
    }
    // Ask for one more than the limit to learn whether the listing is complete.
    const names = host.kvList(prefix, limit + 1);
    const complete = names.length <= limit;
    const keys = names.slice(0, limit).map((name) => ({ name }));
    return { keys, list_complete: complete, cursor: complete ? "" : keys[keys.length - 1].name };
  },
});

// ------------------------------------------------------------- internals --

let handler = null;

function badResponse(message) {
  const e = new Error(message);
  e.name = "CorralBadResponse";
  return e;
}

// A streamed response body's chunk as bytes: Uint8Array (or any other
// BufferSource) as is, strings as UTF-8.
function chunkBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (isBufferSource(value)) return copyBytes(value);
  if (typeof value === "string") return utf8Encode(value);
  throw new TypeError(
    `a streamed response body must yield Uint8Array (or string) chunks, got ${inspect(value)}`,
  );
}

// Open response streams: scope -> { reader, read }, where `read` is the
// state of the read under way: null (none), { pending }, { chunk }, { done }
// or { error }.
const streams = new Map();

const internals = {
  // Validates the tenant module's namespace and keeps its fetch handler.
  setModule(ns) {
    const def = ns.default;
    if (def === null || (typeof def !== "object" && typeof def !== "function") || typeof def.fetch !== "function") {
      throw badResponse("app.js must `export default { fetch(request, env, ctx) { ... } }`");
    }
    handler = def;
  },

  // Runs the handler for one request in `scope`. Resolves to
  // [status, [name, value, ...], body Uint8Array or null, streamed]. When
  // `streamed` is true the body is a stream, read chunk by chunk with
  // `pullStart`/`pullResult` until it ends or the host calls `endScope`;
  // `ctx.waitUntil` promises then run alongside it instead of delaying the
  // head.
  run(scope, method, url, headerPairs, body, hasKv) {
    currentScope = scope;
    clearScopeTimers(scope);
    const headers = new Headers();
    for (let i = 0; i < headerPairs.length; i += 2) headers.append(headerPairs[i], headerPairs[i + 1]);
    const init = { method, headers };
    if (body != null && method !== "GET" && method !== "HEAD") init.body = body;
    const request = new Request(url, init);
    const env = {};
    if (hasKv) env.KV = KV;
    const waits = [];
    const ctx = Object.freeze({
      waitUntil(p) {
        waits.push(Promise.resolve(p).catch((e) => console.error(e)));
      },
      passThroughOnException() {},
    });
    return Promise.resolve()
      .then(() => handler.fetch(request, env, ctx))
      .then((response) => {
        if (!(response instanceof Response)) {
          throw badResponse(`fetch() must return a Response, got ${inspect(response)}`);
        }
        const head = [response.status, Headers._wirePairs(response.headers)];
        const stream = Body._streamOf(response);
        if (stream !== null) {
          streams.set(scope, { reader: stream.getReader(), read: null });
          return [...head, null, true];
        }
        const bytes = response._peekBytes();
        return Promise.all(waits).then(() => [...head, bytes, false]);
      });
  },

  // Starts reading the next chunk of `scope`'s stream, unless a read is
  // already under way or settled.
  pullStart(scope) {
    currentScope = scope;
    const s = streams.get(scope);
    if (!s || s.read !== null) return;
    const read = { pending: true };
    s.read = read;
    s.reader.read().then(
      ({ value, done }) => {
        read.pending = false;
        if (done) read.done = true;
        else {
          try {
            read.chunk = chunkBytes(value);
          } catch (e) {
            read.error = e;
          }
        }
      },
      (e) => {
        read.pending = false;
        read.error = e === undefined ? new TypeError("the response stream was errored") : e;
      },
    );
  },

  // The settled read of `scope`'s stream: undefined while it is pending,
  // null when the stream has ended, else the chunk's bytes. A stream the
  // guest errored throws its error.
  pullResult(scope) {
    const s = streams.get(scope);
    if (!s) return null;
    const read = s.read;
    if (read === null || read.pending) return undefined;
    s.read = null;
    if (read.error !== undefined) throw read.error;
    return read.done ? null : read.chunk;
  },

  // Milliseconds until `scope`'s earliest timer is due, or -1 when it has none.
  nextTimer(scope) {
    const t = earliestTimer(scope);
    return t ? Math.max(0, t[1].due - Date.now()) : -1;
  },

  // Fires `scope`'s earliest timer.
  fireTimer(scope) {
    currentScope = scope;
    const t = earliestTimer(scope);
    if (!t) return;
    const [id, timer] = t;
    if (timer.repeat) {
      timer.due = Date.now() + Math.max(1, timer.delay) + 1;
      timer.seq = ++timerSeq;
    } else {
      timers.delete(id);
    }
    timer.fn(...timer.args);
  },

  // Ends `scope`: drops its timers (none outlives its request) and, if its
  // stream is still open (the client went away, or a limit ended it),
  // cancels the stream so the guest's `cancel` callback runs.
  endScope(scope) {
    clearScopeTimers(scope);
    const s = streams.get(scope);
    streams.delete(scope);
    if (s) {
      currentScope = scope;
      try {
        s.reader.cancel("the response stream was closed").catch(() => {});
      } catch (_) {
        // A broken reader must not stop the host.
      }
      clearScopeTimers(scope);
    }
  },
};

export default internals;
