// Corral's JavaScript prelude: the Workers-style web classes every tenant
// sees (Request, Response, Headers, URL, URLSearchParams, TextEncoder,
// TextDecoder, atob/btoa, streams, events and abort signals, console, crypto
// and crypto.subtle, CompressionStream/DecompressionStream, Blob, File,
// FormData, timers), written over a handful of host functions. The URL
// parser, the form encoding, the text encodings and base64 are not written
// here: they are host functions over the `url`, `form_urlencoded`,
// `encoding_rs` and `base64` crates (js/web.rs); so are the hashes (sha1,
// sha2, hmac: js/subtle.rs), the (de)compression coders (flate2:
// js/compress.rs) and multipart parsing (js/multipart.rs). It is compiled to QuickJS bytecode once per
// process and evaluated into every tenant runtime before the tenant's module.
//
// The host functions arrive on `globalThis.__corral_host`; this module takes
// them and deletes the global, so tenant code never sees them directly.
// The module's default export is the `internals` object the host drives.

// ------------------------------------------------------------ primordials --
// The built-ins this prelude relies on, captured when it loads, before any
// tenant code runs (as Node's lib/internal/per_context/primordials.js does).
// A tenant that replaces a global or patches a prototype (Array.prototype.
// splice, Promise.prototype.then, a getter on Object.prototype, an
// iterator's `next` or Symbol.iterator) changes its own code only: the
// helpers the host drives neither run its code nor change what they do.
// Those helpers call methods through these captures, iterate arrays by
// index and maps with a captured forEach (never with an iterator, so no
// spread, destructuring of arrays or for-of), keep their records on null
// prototypes, and tell built-in objects apart by their internal slots, not
// by `instanceof`.

const {
  Array,
  ArrayBuffer,
  DataView,
  Date,
  Error,
  FinalizationRegistry,
  Float32Array,
  Float64Array,
  Function,
  JSON,
  Map,
  Math,
  Number,
  Object,
  Promise,
  RangeError,
  Reflect,
  RegExp,
  String,
  Symbol,
  TypeError,
  Uint8Array,
} = globalThis;

// uncurryThis(f)(self, ...args) is f.call(self, ...args), with the `call`
// and `bind` of load time.
const uncurryThis = Function.prototype.bind.bind(Function.prototype.call);
const getter = (proto, name) => uncurryThis(Object.getOwnPropertyDescriptor(proto, name).get);

const ReflectApply = Reflect.apply;
const ReflectOwnKeys = Reflect.ownKeys;
const ReflectGetOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor;
const IteratorPrototype = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]()));
const FinalizationRegistryPrototypeRegister = uncurryThis(FinalizationRegistry.prototype.register);
const FinalizationRegistryPrototypeUnregister = uncurryThis(FinalizationRegistry.prototype.unregister);
const SharedArrayBufferPrototypeGetByteLength =
  typeof SharedArrayBuffer === "function" ? getter(SharedArrayBuffer.prototype, "byteLength") : undefined;
const ObjectDefineProperty = Object.defineProperty;
const ObjectFreeze = Object.freeze;
const ObjectKeys = Object.keys;
const ObjectPrototypeToString = Object.prototype.toString;
const ArrayIsArray = Array.isArray;
const ArrayFrom = Array.from;
const ArrayPrototypeJoin = uncurryThis(Array.prototype.join);
const ArrayPrototypePop = uncurryThis(Array.prototype.pop);
const ArrayPrototypePush = uncurryThis(Array.prototype.push);
const ArrayPrototypeShift = uncurryThis(Array.prototype.shift);
const ArrayPrototypeSlice = uncurryThis(Array.prototype.slice);
const ArrayPrototypeSort = uncurryThis(Array.prototype.sort);
const ArrayPrototypeSplice = uncurryThis(Array.prototype.splice);
const ArrayBufferIsView = ArrayBuffer.isView;
const ArrayBufferPrototypeGetByteLength = getter(ArrayBuffer.prototype, "byteLength");
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype);
const TypedArrayPrototypeGetBuffer = getter(TypedArrayPrototype, "buffer");
const TypedArrayPrototypeGetByteLength = getter(TypedArrayPrototype, "byteLength");
const TypedArrayPrototypeGetByteOffset = getter(TypedArrayPrototype, "byteOffset");
const TypedArrayPrototypeGetLength = getter(TypedArrayPrototype, "length");
const TypedArrayPrototypeGetSymbolToStringTag = getter(TypedArrayPrototype, Symbol.toStringTag);
const TypedArrayPrototypeSet = uncurryThis(TypedArrayPrototype.set);
const TypedArrayPrototypeSubarray = uncurryThis(TypedArrayPrototype.subarray);
const DataViewPrototypeGetBuffer = getter(DataView.prototype, "buffer");
const DataViewPrototypeGetByteLength = getter(DataView.prototype, "byteLength");
const DataViewPrototypeGetByteOffset = getter(DataView.prototype, "byteOffset");
const DateNow = Date.now;
const DatePrototypeGetTime = uncurryThis(Date.prototype.getTime);
const MapPrototypeDelete = uncurryThis(Map.prototype.delete);
const MapPrototypeForEach = uncurryThis(Map.prototype.forEach);
const MapPrototypeGet = uncurryThis(Map.prototype.get);
const MapPrototypeHas = uncurryThis(Map.prototype.has);
const MapPrototypeSet = uncurryThis(Map.prototype.set);
const MapPrototypeGetSize = getter(Map.prototype, "size");
const WeakMapPrototypeGet = uncurryThis(WeakMap.prototype.get);
const WeakMapPrototypeSet = uncurryThis(WeakMap.prototype.set);
const MathMax = Math.max;
const MathMin = Math.min;
const MathTrunc = Math.trunc;
const NumberIsInteger = Number.isInteger;
const NumberIsNaN = Number.isNaN;
const PromiseReject = Promise.reject.bind(Promise);
const PromiseResolve = Promise.resolve.bind(Promise);
const PromisePrototypeThen = uncurryThis(Promise.prototype.then);
const StringPrototypeCharCodeAt = uncurryThis(String.prototype.charCodeAt);
const StringPrototypeIndexOf = uncurryThis(String.prototype.indexOf);
const StringPrototypeSlice = uncurryThis(String.prototype.slice);
const StringPrototypeSplit = uncurryThis(String.prototype.split);
const StringPrototypeToLowerCase = uncurryThis(String.prototype.toLowerCase);
const StringPrototypeToWellFormed = uncurryThis(String.prototype.toWellFormed);
// exec, not test: `test` looks up `exec` on the regular expression.
const RegExpPrototypeExec = uncurryThis(RegExp.prototype.exec);
const ObjectSetPrototypeOf = Object.setPrototypeOf;
const JSONStringify = JSON.stringify;
const JSONParse = JSON.parse;

// `p.catch(onRejected)` without looking up `then` on `p`.
const PromisePrototypeCatch = (p, onRejected) => PromisePrototypeThen(p, undefined, onRejected);

// Whether `v` is an ArrayBuffer (by its internal slot).
function isArrayBuffer(v) {
  if (v === null || (typeof v !== "object" && typeof v !== "function")) return false;
  try {
    ArrayBufferPrototypeGetByteLength(v);
    return true;
  } catch {
    return false;
  }
}

// Whether `v` is a SharedArrayBuffer (by its internal slot).
function isSharedArrayBuffer(v) {
  if (SharedArrayBufferPrototypeGetByteLength === undefined) return false;
  if (v === null || (typeof v !== "object" && typeof v !== "function")) return false;
  try {
    SharedArrayBufferPrototypeGetByteLength(v);
    return true;
  } catch {
    return false;
  }
}

// The typed array kind of `v` ("Uint8Array", ...), or undefined.
const typedArrayName = (v) => (ArrayBufferIsView(v) ? TypedArrayPrototypeGetSymbolToStringTag(v) : undefined);

const isUint8Array = (v) => typedArrayName(v) === "Uint8Array";

// [buffer, byteOffset, byteLength] of an ArrayBuffer view, read from its
// internal slots.
function viewRange(v) {
  if (typedArrayName(v) !== undefined) {
    return [TypedArrayPrototypeGetBuffer(v), TypedArrayPrototypeGetByteOffset(v), TypedArrayPrototypeGetByteLength(v)];
  }
  return [DataViewPrototypeGetBuffer(v), DataViewPrototypeGetByteOffset(v), DataViewPrototypeGetByteLength(v)];
}

const host = globalThis.__corral_host;
const globalObject = globalThis; // before a tenant can replace `globalThis`
delete globalThis.__corral_host;

const define = (name, value) =>
  ObjectDefineProperty(globalThis, name, {
    __proto__: null,
    value,
    writable: true,
    configurable: true,
    enumerable: false,
  });

// ------------------------------------------------------------ lazy parts --
// The sections after a `// @part NAME` line (up to the next `// @part`) are
// not evaluated with this core: js/split.rs compiles each part to its own
// module, read and evaluated in a runtime only when its code first touches
// one of the part's globals (or the core calls into it). A part imports
// the core's bindings it uses (this module exports them, to parts only)
// and takes the built-in globals it names from their load-time values, so
// a tenant that replaced a global or patched a prototype before a part
// loads changes nothing the part does. A `define("X", X)` below of an X a
// part declares becomes `defineLazy("X", "part")`, and the core's uses of
// a part's names become stubs that load it (split.rs appends them).

const realGlobal = globalThis;
const ReflectConstruct = Reflect.construct;
const ObjectHasOwn = Object.hasOwn;
const loadedParts = { __proto__: null }; // part name -> its module namespace
const lazyProps = []; // the lazy properties not yet loaded, as records

// The namespace of `part`, evaluated now if it is not yet. The host reads
// and evaluates its bytecode in this runtime: the tenant pays for it, in
// memory and time, as for any other code it runs.
function needPart(part) {
  const loaded = loadedParts[part];
  if (loaded !== undefined) return loaded;
  const ns = host.loadPart(part);
  partLoaded(part, ns);
  return ns;
}

// Rebinds the core's stubs for `part` and settles its lazy properties.
function partLoaded(part, ns) {
  loadedParts[part] = ns;
  partBinders[part](ns);
  for (let i = 0; i < lazyProps.length; i++) {
    const p = lazyProps[i];
    if (p.part !== part) continue;
    // Unless the tenant replaced or deleted the property meanwhile.
    const d = ReflectGetOwnPropertyDescriptor(p.obj, p.key);
    if (d !== undefined && ObjectHasOwn(d, "get") && d.get === p.get) {
      ObjectDefineProperty(p.obj, p.key, {
        __proto__: null,
        value: ns[p.exportName],
        writable: p.writable,
        enumerable: p.enumerable,
        configurable: true,
      });
    }
  }
}

// `obj[key]` as `part`'s export `exportName`, loaded on first read: an
// accessor until then that becomes the data property it stands for.
// Setting it first (when writable) replaces it without loading the part.
function defineLazyOn(obj, key, part, exportName, enumerable, writable) {
  const p = { __proto__: null, obj, key, part, exportName, enumerable, writable, get: undefined };
  p.get = function () {
    return needPart(part)[exportName];
  };
  ArrayPrototypePush(lazyProps, p);
  ObjectDefineProperty(obj, key, {
    __proto__: null,
    get: p.get,
    set: writable
      ? function (value) {
          ObjectDefineProperty(this, key, { __proto__: null, value, writable: true, enumerable, configurable: true });
        }
      : undefined,
    enumerable,
    configurable: true,
  });
}

const defineLazy = (name, part) => defineLazyOn(realGlobal, name, part, name, false, true);

// The core's binding for a part's function or class until the part loads:
// loads it, then calls (or constructs) the real one, which from then on
// is the binding itself.
function lazyStub(part, current) {
  return function (...args) {
    needPart(part);
    const f = current();
    return new.target === undefined ? ReflectApply(f, this, args) : ReflectConstruct(f, args);
  };
}

// ---------------------------------------------------------------- bytes ----

function utf8Encode(s) {
  return host.encodeUtf8(String(s));
}

function utf8Decode(bytes, fatal) {
  return host.decodeUtf8(bytes, !!fatal);
}

// Copies any BufferSource into a fresh Uint8Array (without ArrayBuffer's
// `slice`, which would ask the buffer's `constructor` for its species).
// A detached buffer holds no bytes: its copy is empty.
function copyBytes(src) {
  let range;
  if (isArrayBuffer(src)) range = [src, 0, ArrayBufferPrototypeGetByteLength(src)];
  else if (ArrayBufferIsView(src)) {
    try {
      range = viewRange(src);
    } catch {
      range = [null, 0, 0]; // a DataView over a detached buffer
    }
  } else throw new TypeError("expected an ArrayBuffer or an ArrayBuffer view");
  const out = new Uint8Array(range[2]);
  if (range[2] > 0) TypedArrayPrototypeSet(out, new Uint8Array(range[0], range[1], range[2]));
  return out;
}

function isBufferSource(v) {
  return isArrayBuffer(v) || isSharedArrayBuffer(v) || ArrayBufferIsView(v);
}

// A Uint8Array over the bytes a BufferSource (shared or not) views: no copy.
function bytesView(src) {
  if (isArrayBuffer(src) || isSharedArrayBuffer(src)) return new Uint8Array(src);
  if (ArrayBufferIsView(src)) {
    const range = viewRange(src);
    return new Uint8Array(range[0], range[1], range[2]);
  }
  throw new TypeError("expected an ArrayBuffer or an ArrayBuffer view");
}

// WebIDL's DOMString and USVString conversions (a template literal is
// ToString: a Symbol is a TypeError).
const domString = (v) => `${v}`;
const usvString = (v) => StringPrototypeToWellFormed(`${v}`);

function requireArgs(count, need, what) {
  if (count < need) throw new TypeError(`${what}: ${need} argument${need === 1 ? "" : "s"} required`);
}

// @part text
// ------------------------------------------------------ TextEncoder/Decoder --
// The encodings are encoding_rs's (every WHATWG label, UTF-16, the legacy
// single- and multi-byte ones), behind host functions.

class TextEncoder {
  get encoding() {
    return "utf-8";
  }
  encode(input = "") {
    return utf8Encode(usvString(input));
  }
  encodeInto(source, destination) {
    requireArgs(arguments.length, 2, "TextEncoder.encodeInto");
    source = domString(source);
    if (!isUint8Array(destination)) throw new TypeError("TextEncoder.encodeInto: the destination must be a Uint8Array");
    // The host writes whole characters only, as many as fit.
    const out = host.encodeInto(source, TypedArrayPrototypeGetLength(destination));
    TypedArrayPrototypeSet(destination, out[1]);
    return { read: out[0], written: TypedArrayPrototypeGetLength(out[1]) };
  }
  get [Symbol.toStringTag]() {
    return "TextEncoder";
  }
}

// A stream's decoder lives in the host while the stream is open; one whose
// TextDecoder is collected mid-stream is freed here.
const decoderStreams = new FinalizationRegistry((handle) => host.decoderClose(handle));

let textDecode; // (decoder, input, stream) -> string: what decode() does

class TextDecoder {
  #encoding;
  #fatal;
  #ignoreBOM;
  #stream = -1; // the host decoder of a stream in progress, or -1
  constructor(label = "utf-8", options = undefined) {
    label = domString(label);
    if (options !== undefined && options !== null && typeof options !== "object" && typeof options !== "function") {
      throw new TypeError("TextDecoder: options must be an object");
    }
    const fatal = options == null ? false : !!options.fatal;
    const ignoreBOM = options == null ? false : !!options.ignoreBOM;
    const encoding = host.encodingName(label);
    if (encoding == null) throw new RangeError(`TextDecoder: unsupported encoding ${label}`);
    this.#encoding = encoding;
    this.#fatal = fatal;
    this.#ignoreBOM = ignoreBOM;
  }
  get encoding() {
    return this.#encoding;
  }
  get fatal() {
    return this.#fatal;
  }
  get ignoreBOM() {
    return this.#ignoreBOM;
  }
  decode(input = undefined, options = undefined) {
    if (options !== undefined && options !== null && typeof options !== "object" && typeof options !== "function") {
      throw new TypeError("TextDecoder.decode: options must be an object");
    }
    const stream = options == null ? false : !!options.stream;
    return textDecode(this, input, stream);
  }
  get [Symbol.toStringTag]() {
    return "TextDecoder";
  }
  static {
    textDecode = (d, input, stream) => {
      const bytes = input === undefined ? new Uint8Array(0) : bytesView(input);
      if (d.#stream < 0) {
        if (!stream) return host.decode(d.#encoding, d.#ignoreBOM, bytes, d.#fatal);
        d.#stream = host.decoderOpen(d.#encoding, d.#ignoreBOM);
        FinalizationRegistryPrototypeRegister(decoderStreams, d, d.#stream, d);
      }
      const handle = d.#stream;
      if (stream) return host.decoderDecode(handle, bytes, d.#fatal, false);
      // The stream ends: flush and free its decoder, whatever the result.
      d.#stream = -1;
      FinalizationRegistryPrototypeUnregister(decoderStreams, d);
      try {
        return host.decoderDecode(handle, bytes, d.#fatal, true);
      } finally {
        host.decoderClose(handle);
      }
    };
  }
}

// @part core
// ----------------------------------------------------------------- base64 --
// The forgiving-base64 of the HTML standard, from the `base64` crate.

function atob(data) {
  requireArgs(arguments.length, 1, "atob");
  const out = host.atob(domString(data));
  if (out == null) throw new DOMException("atob: the string is not correctly encoded", "InvalidCharacterError");
  return out;
}

function btoa(data) {
  requireArgs(arguments.length, 1, "btoa");
  const out = host.btoa(domString(data));
  if (out == null) throw new DOMException("btoa: the string contains characters outside of Latin1", "InvalidCharacterError");
  return out;
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
  return (...args) => {
    let line = prefix;
    for (let i = 0; i < args.length; i++) line += (i > 0 ? " " : "") + inspect(args[i]);
    host.log(line);
  };
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
    // WebIDL takes any ArrayBufferView (else a TypeError); Web Crypto then
    // refuses the non-integer ones with a TypeMismatchError DOMException.
    if (!ArrayBufferIsView(array)) {
      throw new TypeError("crypto.getRandomValues: expected an integer typed array");
    }
    const kind = typedArrayName(array);
    if (kind === undefined || kind === "Float16Array" || kind === "Float32Array" || kind === "Float64Array") {
      throw new DOMException("crypto.getRandomValues: expected an integer typed array", "TypeMismatchError");
    }
    const range = viewRange(array);
    if (range[2] > 65536) {
      throw new DOMException(
        `crypto.getRandomValues: ${range[2]} bytes requested; the limit is 65536`,
        "QuotaExceededError",
      );
    }
    const bytes = host.randomBytes(range[2]);
    TypedArrayPrototypeSet(new Uint8Array(range[0], range[1], range[2]), bytes);
    return array;
  },
  randomUUID,
});
defineLazyOn(realGlobal.crypto, "subtle", "subtle", "subtleCrypto", true, false);

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
  const delay = MathMax(0, Number(ms) || 0);
  const id = ++timerSeq;
  // Date.now() is whole milliseconds, truncated: the extra millisecond keeps
  // a timer from firing before `delay` has really passed.
  const due = DateNow() + delay + 1;
  MapPrototypeSet(timers, id, { __proto__: null, fn, args, delay, due, repeat, seq: id, scope: currentScope });
  return id;
}

define("setTimeout", (fn, ms, ...args) => addTimer(fn, ms, args, false));
define("setInterval", (fn, ms, ...args) => addTimer(fn, ms, args, true));
define("clearTimeout", (id) => void MapPrototypeDelete(timers, id));
define("clearInterval", (id) => void MapPrototypeDelete(timers, id));
define("queueMicrotask", (fn) => {
  if (typeof fn !== "function") throw new TypeError("queueMicrotask: expected a function");
  PromisePrototypeThen(PromiseResolve(), () => fn());
});

// `scope`'s next timer as { id, t }, or undefined.
function earliestTimer(scope) {
  let best;
  MapPrototypeForEach(timers, (t, id) => {
    if (t.scope !== scope) return;
    if (best === undefined || t.due < best.t.due || (t.due === best.t.due && t.seq < best.t.seq)) {
      best = { __proto__: null, id, t };
    }
  });
  return best;
}

function clearScopeTimers(scope) {
  if (MapPrototypeGetSize(timers) === 0) return;
  MapPrototypeForEach(timers, (t, id) => {
    if (t.scope === scope) MapPrototypeDelete(timers, id);
  });
}

// @part url
// ---------------------------------------------------------- URLSearchParams --
// application/x-www-form-urlencoded parsing and serializing are the
// `form_urlencoded` crate's (percent-decoding as UTF-8), behind host
// functions. The list is flat: [name0, value0, name1, value1, …].

let isURLSearchParams; // by its private field, not instanceof
// The links between a URL and its searchParams (set in static blocks).
let paramsAttach; // (params, url, query): the params of `url`
let paramsReparse; // (params, query): the URL's query changed
let paramsEntry; // (params, index) -> [name, value] or undefined
let urlSetQuery; // (url, serialized): the params changed

const ParamsIteratorPrototype = Object.create(IteratorPrototype, {
  next: {
    __proto__: null,
    value: function next() {
      const it = WeakMapPrototypeGet(paramsIterators, this);
      if (it === undefined) throw new TypeError("next called on an object that is not a URLSearchParams Iterator");
      // Live: each step reads the list as it is now.
      const pair = paramsEntry(it.params, it.index);
      if (pair === undefined) return { value: undefined, done: true };
      it.index++;
      const value = it.kind === "key" ? pair[0] : it.kind === "value" ? pair[1] : pair;
      return { value, done: false };
    },
    writable: true,
    enumerable: true,
    configurable: true,
  },
  [Symbol.toStringTag]: { __proto__: null, value: "URLSearchParams Iterator", configurable: true },
});
const paramsIterators = new WeakMap();

function paramsIterator(params, kind) {
  const it = Object.create(ParamsIteratorPrototype);
  WeakMapPrototypeSet(paramsIterators, it, { __proto__: null, params, kind, index: 0 });
  return it;
}

class URLSearchParams {
  #list = [];
  #url = null;
  static {
    isURLSearchParams = (x) => {
      try {
        x.#list;
        return true;
      } catch {
        return false;
      }
    };
    paramsAttach = (params, url, query) => {
      params.#url = url;
      params.#list = host.formParse(query);
    };
    paramsReparse = (params, query) => {
      params.#list = host.formParse(query);
    };
    paramsEntry = (params, index) => {
      const list = params.#list;
      return 2 * index < list.length ? [list[2 * index], list[2 * index + 1]] : undefined;
    };
  }
  constructor(init = "") {
    if (init !== null && (typeof init === "object" || typeof init === "function")) {
      const method = init[Symbol.iterator];
      if (method !== undefined && method !== null) {
        if (typeof method !== "function") throw new TypeError("URLSearchParams: init is not iterable");
        // sequence<sequence<USVString>>: the tenant's own iterables.
        for (const pair of { [Symbol.iterator]: () => ReflectApply(method, init, []) }) {
          if (pair === null || (typeof pair !== "object" && typeof pair !== "function")) {
            throw new TypeError("URLSearchParams: each pair must be a sequence");
          }
          const p = ArrayFrom(pair);
          if (p.length !== 2) throw new TypeError("URLSearchParams: each pair needs two items");
          ArrayPrototypePush(this.#list, usvString(p[0]), usvString(p[1]));
        }
      } else {
        // record<USVString, USVString>: own enumerable string keys.
        const keys = ReflectOwnKeys(init);
        for (let i = 0; i < keys.length; i++) {
          const key = keys[i];
          if (typeof key !== "string") continue;
          const desc = ReflectGetOwnPropertyDescriptor(init, key);
          if (desc === undefined || !desc.enumerable) continue;
          const name = usvString(key);
          const value = usvString(init[key]);
          // A later key that converts to the same name replaces the value.
          let at = -1;
          for (let j = 0; j < this.#list.length; j += 2) if (this.#list[j] === name) at = j;
          if (at < 0) ArrayPrototypePush(this.#list, name, value);
          else this.#list[at + 1] = value;
        }
      }
    } else {
      const s = usvString(init);
      this.#list = host.formParse(s[0] === "?" ? StringPrototypeSlice(s, 1) : s);
    }
  }
  #update() {
    if (this.#url !== null) urlSetQuery(this.#url, host.formSerialize(this.#list));
  }
  get size() {
    return this.#list.length / 2;
  }
  append(name, value) {
    requireArgs(arguments.length, 2, "URLSearchParams.append");
    ArrayPrototypePush(this.#list, usvString(name), usvString(value));
    this.#update();
  }
  delete(name, value = undefined) {
    requireArgs(arguments.length, 1, "URLSearchParams.delete");
    name = usvString(name);
    if (value !== undefined) value = usvString(value);
    const list = this.#list;
    const kept = [];
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] === name && (value === undefined || list[i + 1] === value)) continue;
      ArrayPrototypePush(kept, list[i], list[i + 1]);
    }
    this.#list = kept;
    this.#update();
  }
  get(name) {
    requireArgs(arguments.length, 1, "URLSearchParams.get");
    name = usvString(name);
    const list = this.#list;
    for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
    return null;
  }
  getAll(name) {
    requireArgs(arguments.length, 1, "URLSearchParams.getAll");
    name = usvString(name);
    const list = this.#list;
    const out = [];
    for (let i = 0; i < list.length; i += 2) if (list[i] === name) ArrayPrototypePush(out, list[i + 1]);
    return out;
  }
  has(name, value = undefined) {
    requireArgs(arguments.length, 1, "URLSearchParams.has");
    name = usvString(name);
    if (value !== undefined) value = usvString(value);
    const list = this.#list;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] === name && (value === undefined || list[i + 1] === value)) return true;
    }
    return false;
  }
  set(name, value) {
    requireArgs(arguments.length, 2, "URLSearchParams.set");
    name = usvString(name);
    value = usvString(value);
    const list = this.#list;
    const kept = [];
    let found = false;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] !== name) ArrayPrototypePush(kept, list[i], list[i + 1]);
      else if (!found) {
        found = true;
        ArrayPrototypePush(kept, name, value);
      }
    }
    if (!found) ArrayPrototypePush(kept, name, value);
    this.#list = kept;
    this.#update();
  }
  sort() {
    this.#list = host.formSort(this.#list);
    this.#update();
  }
  forEach(callback, thisArg = undefined) {
    requireArgs(arguments.length, 1, "URLSearchParams.forEach");
    if (typeof callback !== "function") throw new TypeError("URLSearchParams.forEach: the callback must be a function");
    for (let i = 0; i < this.#list.length; i += 2) {
      ReflectApply(callback, thisArg, [this.#list[i + 1], this.#list[i], this]);
    }
  }
  entries() {
    this.#list; // a brand check
    return paramsIterator(this, "key+value");
  }
  keys() {
    this.#list;
    return paramsIterator(this, "key");
  }
  values() {
    this.#list;
    return paramsIterator(this, "value");
  }
  toString() {
    return host.formSerialize(this.#list);
  }
  get [Symbol.toStringTag]() {
    return "URLSearchParams";
  }
}
ObjectDefineProperty(URLSearchParams.prototype, Symbol.iterator, {
  __proto__: null,
  value: URLSearchParams.prototype.entries,
  writable: true,
  configurable: true,
  enumerable: false,
});

// -------------------------------------------------------------------- URL --
// The WHATWG URL parser, getters and setters are the `url` crate's (its
// `quirks` module), behind host functions. A URL keeps the components the
// host hands back, in this order:
const HREF = 0;
const ORIGIN = 1;
const PROTOCOL = 2;
const USERNAME = 3;
const PASSWORD = 4;
const HOST = 5;
const HOSTNAME = 6;
const PORT = 7;
const PATHNAME = 8;
const SEARCH = 9;
const HASH = 10;

// What URL.parse passes the constructor with the components it already has
// (so a URL is never parsed twice); unreachable from tenant code.
const URL_PARTS = { __proto__: null };

class URL {
  #parts;
  #params = null; // made on first use

  constructor(url, base = undefined) {
    if (url === URL_PARTS) {
      this.#parts = base;
      return;
    }
    requireArgs(arguments.length, 1, "URL");
    url = usvString(url);
    const parts = host.urlParse(url, base === undefined ? undefined : usvString(base));
    if (parts == null) throw new TypeError(`Invalid URL: ${url}`);
    this.#parts = parts;
  }

  static canParse(url, base = undefined) {
    requireArgs(arguments.length, 1, "URL.canParse");
    return host.urlParse(usvString(url), base === undefined ? undefined : usvString(base)) != null;
  }

  static parse(url, base = undefined) {
    requireArgs(arguments.length, 1, "URL.parse");
    const parts = host.urlParse(usvString(url), base === undefined ? undefined : usvString(base));
    return parts == null ? null : new URL(URL_PARTS, parts);
  }

  static {
    urlSetQuery = (url, query) => {
      url.#parts = host.urlSet(url.#parts[HREF], SEARCH, query);
    };
  }

  #set(field, value) {
    value = usvString(value);
    const parts = host.urlSet(this.#parts[HREF], field, value);
    if (parts == null) throw new TypeError(`Invalid URL: ${value}`);
    this.#parts = parts;
    if ((field === HREF || field === SEARCH) && this.#params !== null) {
      paramsReparse(this.#params, StringPrototypeSlice(parts[SEARCH], 1));
    }
  }

  get href() {
    return this.#parts[HREF];
  }
  set href(v) {
    this.#set(HREF, v);
  }
  get origin() {
    return this.#parts[ORIGIN];
  }
  get protocol() {
    return this.#parts[PROTOCOL];
  }
  set protocol(v) {
    this.#set(PROTOCOL, v);
  }
  get username() {
    return this.#parts[USERNAME];
  }
  set username(v) {
    this.#set(USERNAME, v);
  }
  get password() {
    return this.#parts[PASSWORD];
  }
  set password(v) {
    this.#set(PASSWORD, v);
  }
  get host() {
    return this.#parts[HOST];
  }
  set host(v) {
    this.#set(HOST, v);
  }
  get hostname() {
    return this.#parts[HOSTNAME];
  }
  set hostname(v) {
    this.#set(HOSTNAME, v);
  }
  get port() {
    return this.#parts[PORT];
  }
  set port(v) {
    this.#set(PORT, v);
  }
  get pathname() {
    return this.#parts[PATHNAME];
  }
  set pathname(v) {
    this.#set(PATHNAME, v);
  }
  get search() {
    return this.#parts[SEARCH];
  }
  set search(v) {
    this.#set(SEARCH, v);
  }
  get searchParams() {
    if (this.#params === null) {
      this.#params = new URLSearchParams();
      paramsAttach(this.#params, this, StringPrototypeSlice(this.#parts[SEARCH], 1));
    }
    return this.#params;
  }
  get hash() {
    return this.#parts[HASH];
  }
  set hash(v) {
    this.#set(HASH, v);
  }
  toString() {
    return this.#parts[HREF];
  }
  toJSON() {
    return this.#parts[HREF];
  }
  get [Symbol.toStringTag]() {
    return "URL";
  }
}

// @part core
// ---------------------------------------------------------------- Headers --

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function normName(name) {
  name = String(name);
  if (RegExpPrototypeExec(TOKEN, name) === null) throw new TypeError(`Invalid header name: ${name}`);
  return StringPrototypeToLowerCase(name);
}

// HTTP whitespace: tab, line feed, carriage return, space.
const isHttpSpace = (c) => c === 0x09 || c === 0x0a || c === 0x0d || c === 0x20;

function normValue(value) {
  value = String(value);
  // Trimmed by index (not `replace`, which a tenant could reach).
  let start = 0;
  let end = value.length;
  while (start < end && isHttpSpace(StringPrototypeCharCodeAt(value, start))) start++;
  while (end > start && isHttpSpace(StringPrototypeCharCodeAt(value, end - 1))) end--;
  value = StringPrototypeSlice(value, start, end);
  if (RegExpPrototypeExec(/[\0\r\n]/, value) !== null) throw new TypeError("Invalid header value");
  return value;
}

// The prelude's own access to Headers (set in the class's static block):
// public methods and statics can be replaced by a tenant, these cannot.
let isHeaders; // by its private field, not instanceof
let headersAppend;
let headersHas;
let headersSet;
let headersSetIfAbsent;
let headersWirePairs; // every (name, value) as sent on the wire
let headersFreeze; // makes a Headers immutable (its guard, in the Fetch standard)

// The pairs a Headers iterates over, as the Fetch standard sorts and
// combines them: names in order, a name's values joined with ", ", except
// set-cookie, whose values stay apart.
function sortAndCombine(map) {
  const names = [];
  MapPrototypeForEach(map, (_vs, k) => ArrayPrototypePush(names, k));
  ArrayPrototypeSort(names);
  const out = [];
  for (let i = 0; i < names.length; i++) {
    const k = names[i];
    const vs = MapPrototypeGet(map, k);
    if (k === "set-cookie") for (let j = 0; j < vs.length; j++) ArrayPrototypePush(out, [k, vs[j]]);
    else ArrayPrototypePush(out, [k, ArrayPrototypeJoin(vs, ", ")]);
  }
  return out;
}

let headersPairs; // (headers) -> sortAndCombine of its list, now

// The Headers Iterator of WebIDL's pair iterators: it keeps an index into
// the headers' sorted list, recomputed at each step, so a header added or
// removed while iterating is seen or skipped as the standard says.
const HeadersIteratorPrototype = Object.create(IteratorPrototype, {
  next: {
    value: function next() {
      const it = WeakMapPrototypeGet(headersIterators, this);
      if (it === undefined) throw new TypeError("next called on an object that is not a Headers Iterator");
      const pairs = headersPairs(it.headers);
      if (it.index >= pairs.length) return { value: undefined, done: true };
      const pair = pairs[it.index++];
      const value = it.kind === "key" ? pair[0] : it.kind === "value" ? pair[1] : pair;
      return { value, done: false };
    },
    writable: true,
    enumerable: true,
    configurable: true,
  },
  [Symbol.toStringTag]: { value: "Headers Iterator", configurable: true },
});
const headersIterators = new WeakMap();

function headersIterator(headers, kind) {
  const it = Object.create(HeadersIteratorPrototype);
  WeakMapPrototypeSet(headersIterators, it, { headers, kind, index: 0 });
  return it;
}

class Headers {
  #map = new Map(); // lowercased name -> array of values
  #immutable = false;
  static {
    headersFreeze = (h) => {
      h.#immutable = true;
    };
    headersPairs = (h) => sortAndCombine(h.#map);
    isHeaders = (x) => {
      try {
        x.#map;
        return true;
      } catch {
        return false;
      }
    };
    headersAppend = (h, name, value) => {
      const k = normName(name);
      const v = normValue(value);
      const vs = MapPrototypeGet(h.#map, k);
      if (vs) ArrayPrototypePush(vs, v);
      else MapPrototypeSet(h.#map, k, [v]);
    };
    headersHas = (h, name) => MapPrototypeHas(h.#map, normName(name));
    headersSet = (h, name, value) => void MapPrototypeSet(h.#map, normName(name), [normValue(value)]);
    // For a name and value already normalized and valid (the prelude's own
    // constants): no regular expression on every response.
    headersSetIfAbsent = (h, k, v) => MapPrototypeHas(h.#map, k) || void MapPrototypeSet(h.#map, k, [v]);
    headersWirePairs = (h) => {
      const out = [];
      MapPrototypeForEach(h.#map, (vs, k) => {
        for (let i = 0; i < vs.length; i++) ArrayPrototypePush(out, k, vs[i]);
      });
      return out;
    };
  }
  constructor(init) {
    if (init === undefined) return;
    // HeadersInit is a sequence or a record: WebIDL takes no null or primitive.
    if (init === null || (typeof init !== "object" && typeof init !== "function")) {
      throw new TypeError("Headers: init must be an object, a sequence of pairs or a Headers");
    }
    if (isHeaders(init) && init[Symbol.iterator] === HeadersPrototypeIterator) {
      // The fast path, only while the Headers iterates as built-in ones do.
      MapPrototypeForEach(init.#map, (vs, k) => MapPrototypeSet(this.#map, k, ArrayPrototypeSlice(vs)));
    } else if (typeof init[Symbol.iterator] === "function") {
      for (const pair of init) {
        const p = Array.from(pair);
        if (p.length !== 2) throw new TypeError("Headers: each pair needs two items");
        this.append(p[0], p[1]);
      }
    } else if (typeof init === "object") {
      const keys = ObjectKeys(init);
      for (let i = 0; i < keys.length; i++) headersAppend(this, keys[i], init[keys[i]]);
    } else {
      throw new TypeError("Headers: unsupported init");
    }
  }
  append(name, value) {
    if (this.#immutable) throw new TypeError("Headers: these headers are immutable");
    headersAppend(this, name, value);
  }
  set(name, value) {
    if (this.#immutable) throw new TypeError("Headers: these headers are immutable");
    headersSet(this, name, value);
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
    if (this.#immutable) throw new TypeError("Headers: these headers are immutable");
    this.#map.delete(normName(name));
  }
  forEach(cb, thisArg) {
    if (typeof cb !== "function") throw new TypeError("Headers.forEach: the callback is not a function");
    // Live, as the iterators are: the list is sorted again at each step.
    for (let i = 0; ; i++) {
      const pairs = sortAndCombine(this.#map);
      if (i >= pairs.length) break;
      ReflectApply(cb, thisArg, [pairs[i][1], pairs[i][0], this]);
    }
  }
  entries() {
    headersPairs(this);
    return headersIterator(this, "key+value");
  }
  keys() {
    headersPairs(this);
    return headersIterator(this, "key");
  }
  values() {
    headersPairs(this);
    return headersIterator(this, "value");
  }
  get [Symbol.toStringTag]() {
    return "Headers";
  }
}
// WebIDL: @@iterator is the same function as entries.
ObjectDefineProperty(Headers.prototype, Symbol.iterator, {
  value: Headers.prototype.entries,
  writable: true,
  configurable: true,
});
const HeadersPrototypeIterator = Headers.prototype.entries;

// ---------------------------------------------------------------- streams --
// WHATWG streams, the default (non-byte) kind, after the spec's algorithms
// but compact. Each public object keeps its state in a plain object behind a
// private field; a stream's state is shared with its controller and its
// reader or writer, so the algorithms are plain functions over it: rs* for
// readable, ws* for writable and ts* for transform streams.

const noop = () => {};
// Only the streams make controllers: their constructors want this key.
const INTERNAL = Symbol("internal");
// @part streams
let rsOf; // ReadableStream -> its state (set in the class's static block)
let isReadableStream;
let wsOf; // WritableStream -> its state

// @part core
// A promise with its settle functions. Its rejection counts as handled:
// `closed` and `ready` promises need not be awaited.
function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  PromisePrototypeCatch(promise, noop);
  const d = {
    __proto__: null,
    promise,
    settled: false,
    resolve(v) {
      d.settled = true;
      resolve(v);
    },
    reject(e) {
      d.settled = true;
      reject(e);
    },
  };
  return d;
}

// Rejects `d`, or a fresh deferred in its place if `d` has settled already.
function rejectOrReplace(d, e) {
  if (d.settled) d = deferred();
  d.reject(e);
  return d;
}

// An underlying source's, sink's or transformer's method as a function that
// returns a promise (a throw becomes a rejection); a missing one does nothing.
function method(obj, name) {
  const f = obj[name];
  if (f === undefined) return () => PromiseResolve();
  if (typeof f !== "function") throw new TypeError(`${name} must be a function`);
  return (...args) => {
    try {
      return PromiseResolve(ReflectApply(f, obj, args));
    } catch (e) {
      return PromiseReject(e);
    }
  };
}

// Calls `x.then(onFulfilled, onRejected)` with the captured `then` when `x`
// is a real promise; false (and nothing called) when it is not.
function thenIfPromise(x, onFulfilled, onRejected) {
  if (x === null || typeof x !== "object") return false;
  try {
    PromisePrototypeThen(x, onFulfilled, onRejected);
    return true;
  } catch {
    return false;
  }
}

// A promise that settles as the first of `promises` does (Promise.race
// without the array iterator or the promises' own `then`).
function race(promises) {
  const d = deferred();
  for (let i = 0; i < promises.length; i++) PromisePrototypeThen(promises[i], d.resolve, d.reject);
  return d.promise;
}

// Calls `obj.start(controller)` now (a throw escapes the constructor, as the
// spec says), then `onStart` or `onError` once what it returned settles.
function callStart(obj, controller, onStart, onError) {
  const f = obj.start;
  if (f !== undefined && typeof f !== "function") throw new TypeError("start must be a function");
  const started = PromiseResolve(f === undefined ? undefined : ReflectApply(f, obj, [controller]));
  PromisePrototypeThen(started, onStart, onError);
}

// @part streams
// { hwm, size function } of a queuing strategy.
function strategyOf(strategy, defaultHwm) {
  const hwm = strategy?.highWaterMark === undefined ? defaultHwm : Number(strategy.highWaterMark);
  if (NumberIsNaN(hwm) || hwm < 0) throw new RangeError("highWaterMark must be a non-negative number");
  const size = strategy?.size;
  if (size === undefined) return { __proto__: null, hwm, size: () => 1 };
  if (typeof size !== "function") throw new TypeError("size must be a function");
  return {
    __proto__: null,
    hwm,
    size: (chunk) => {
      const n = Number(size(chunk));
      if (!(n >= 0 && n < Infinity)) throw new RangeError("a chunk's size must be a finite, non-negative number");
      return n;
    },
  };
}

class CountQueuingStrategy {
  #hwm;
  constructor(init) {
    if (init?.highWaterMark === undefined) throw new TypeError("highWaterMark is required");
    this.#hwm = Number(init.highWaterMark);
  }
  get highWaterMark() {
    return this.#hwm;
  }
  get size() {
    return countSize;
  }
}
// WebIDL names the function `size`.
const countSize = { size: () => 1 }.size;

class ByteLengthQueuingStrategy {
  #hwm;
  constructor(init) {
    if (init?.highWaterMark === undefined) throw new TypeError("highWaterMark is required");
    this.#hwm = Number(init.highWaterMark);
  }
  get highWaterMark() {
    return this.#hwm;
  }
  get size() {
    return byteLengthSize;
  }
}
const byteLengthSize = { size: (chunk) => chunk.byteLength }.size;

// -- ReadableStream

const rsCanEnqueue = (s) => s.state === "readable" && !s.closeRequested;

function rsDesiredSize(s) {
  return s.state === "errored" ? null : s.state === "closed" ? 0 : s.hwm - s.queueSize;
}

function rsShouldPull(s) {
  if (!rsCanEnqueue(s) || !s.started) return false;
  return (s.reader !== null && s.reader.requests.length > 0) || rsDesiredSize(s) > 0;
}

// Calls pull if the stream wants data: never while a pull is under way, but
// once more after it if it was wanted meanwhile.
function rsPullIfNeeded(s) {
  if (!rsShouldPull(s)) return;
  if (s.pulling) {
    s.pullAgain = true;
    return;
  }
  s.pulling = true;
  PromisePrototypeThen(
    s.pull(s.controller),
    () => {
      s.pulling = false;
      if (s.pullAgain) {
        s.pullAgain = false;
        rsPullIfNeeded(s);
      }
    },
    (e) => rsError(s, e),
  );
}

// Takes a reader's pending read requests, leaving it none.
function takeRequests(r) {
  const reads = r.requests;
  r.requests = [];
  return reads;
}

function rsClose(s) {
  s.state = "closed";
  const r = s.reader;
  if (r === null) return;
  r.closed.resolve();
  const reads = takeRequests(r);
  for (let i = 0; i < reads.length; i++) reads[i].close();
}

function rsError(s, e) {
  if (s.state !== "readable") return;
  s.state = "errored";
  s.error = e;
  s.queue = [];
  s.queueSize = 0;
  const r = s.reader;
  if (r === null) return;
  r.closed.reject(e);
  const reads = takeRequests(r);
  for (let i = 0; i < reads.length; i++) reads[i].error(e);
}

function rsEnqueue(s, chunk) {
  if (!rsCanEnqueue(s)) throw new TypeError("cannot enqueue: the stream is closed or closing");
  const r = s.reader;
  if (r !== null && r.requests.length > 0) {
    // A read is waiting (so the queue is empty): the chunk goes straight to it.
    ArrayPrototypeShift(r.requests).chunk(chunk);
  } else {
    let size;
    try {
      size = s.size(chunk);
    } catch (e) {
      rsError(s, e);
      throw e;
    }
    ArrayPrototypePush(s.queue, { __proto__: null, chunk, size });
    s.queueSize += size;
  }
  rsPullIfNeeded(s);
}

function rsRequestClose(s) {
  if (!rsCanEnqueue(s)) throw new TypeError("cannot close: the stream is closed or closing");
  s.closeRequested = true;
  if (s.queue.length === 0) rsClose(s);
}

// Reads the next chunk of `s` (locked to a reader) into `request`, a read
// request as the spec has them: its chunk(value), close() or error(e) is
// called once, now or when the stream has something.
function rsReadInto(s, request) {
  s.disturbed = true;
  if (s.state === "closed") return request.close();
  if (s.state === "errored") return request.error(s.error);
  if (s.queue.length > 0) {
    const item = ArrayPrototypeShift(s.queue);
    s.queueSize = s.queue.length === 0 ? 0 : s.queueSize - item.size;
    if (s.closeRequested && s.queue.length === 0) rsClose(s);
    else rsPullIfNeeded(s);
    return request.chunk(item.chunk);
  }
  ArrayPrototypePush(s.reader.requests, request);
  rsPullIfNeeded(s);
}

// A read request settling a promise with `result(value, done)`.
function promiseRead(s, result) {
  const d = deferred();
  rsReadInto(s, {
    __proto__: null,
    chunk: (value) => d.resolve(result(value, false)),
    close: () => d.resolve(result(undefined, true)),
    error: d.reject,
  });
  return d.promise;
}

// The guest's reader.read(): resolves to an ordinary { value, done }.
const rsRead = (s) => promiseRead(s, (value, done) => ({ value, done }));

// The prelude's own reads: the result has no prototype, so settling the
// promise with it never looks up a `then` a tenant put on Object.prototype.
const rsReadRecord = (s) => promiseRead(s, (value, done) => ({ __proto__: null, value, done }));

function rsCancel(s, reason) {
  s.disturbed = true;
  if (s.state === "closed") return PromiseResolve();
  if (s.state === "errored") return PromiseReject(s.error);
  rsClose(s);
  s.queue = [];
  s.queueSize = 0;
  return PromisePrototypeThen(s.cancel(reason), noop);
}

function rsAcquireReader(s) {
  if (s.reader !== null) throw new TypeError("the stream is locked to a reader");
  const r = { __proto__: null, stream: s, requests: [], closed: deferred() };
  if (s.state === "closed") r.closed.resolve();
  else if (s.state === "errored") r.closed.reject(s.error);
  s.reader = r;
  return r;
}

function rsReleaseReader(r) {
  const s = r.stream;
  if (s === null) return;
  const e = new TypeError("the reader's lock was released");
  r.closed = rejectOrReplace(r.closed, e);
  const reads = takeRequests(r);
  for (let i = 0; i < reads.length; i++) reads[i].error(e);
  s.reader = null;
  r.stream = null;
}

class ReadableStreamDefaultController {
  #s;
  constructor(key, s) {
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
    this.#s = s;
  }
  get desiredSize() {
    return rsDesiredSize(this.#s);
  }
  enqueue(chunk) {
    rsEnqueue(this.#s, chunk);
  }
  close() {
    rsRequestClose(this.#s);
  }
  error(e) {
    rsError(this.#s, e);
  }
}

class ReadableStreamDefaultReader {
  #r;
  constructor(stream) {
    this.#r = rsAcquireReader(rsOf(stream));
  }
  get closed() {
    return this.#r.closed.promise;
  }
  read() {
    const s = this.#r.stream;
    return s ? rsRead(s) : PromiseReject(new TypeError("the reader's lock was released"));
  }
  cancel(reason) {
    const s = this.#r.stream;
    return s ? rsCancel(s, reason) : PromiseReject(new TypeError("the reader's lock was released"));
  }
  releaseLock() {
    rsReleaseReader(this.#r);
  }
}

class ReadableStream {
  #s;
  static {
    rsOf = (x) => {
      try {
        return x.#s;
      } catch {
        throw new TypeError("expected a ReadableStream");
      }
    };
    // `#s in x`, not a caught `x.#s`: every Response body that is not a
    // stream passes here, and a throw builds an Error with its stack.
    isReadableStream = (x) => x !== null && typeof x === "object" && #s in x;
  }
  constructor(source = {}, strategy = {}) {
    // WebIDL `optional object`: null is not an object.
    if (source === null || (typeof source !== "object" && typeof source !== "function")) {
      throw new TypeError("ReadableStream: the underlying source must be an object");
    }
    if (source.type !== undefined) {
      throw new TypeError(`ReadableStream: type ${JSON.stringify(String(source.type))} is not supported`);
    }
    const { hwm, size } = strategyOf(strategy, 1);
    const s = (this.#s = {
      __proto__: null,
      state: "readable", // then "closed" or "errored"
      error: undefined,
      disturbed: false,
      reader: null,
      queue: [], // { chunk, size }
      queueSize: 0,
      hwm,
      size,
      started: false,
      pulling: false,
      pullAgain: false,
      closeRequested: false,
      pull: method(source, "pull"),
      cancel: method(source, "cancel"),
      controller: null,
      whole: null, // the bytes of a stream made by bytesStream()
    });
    s.controller = new ReadableStreamDefaultController(INTERNAL, s);
    callStart(
      source,
      s.controller,
      () => {
        s.started = true;
        rsPullIfNeeded(s);
      },
      (e) => rsError(s, e),
    );
  }
  // A stream over the values of an async (or sync) iterable.
  static from(iterable) {
    const asyncMethod = iterable?.[Symbol.asyncIterator];
    const isAsync = asyncMethod !== undefined && asyncMethod !== null;
    const m = isAsync ? asyncMethod : iterable?.[Symbol.iterator];
    if (typeof m !== "function") throw new TypeError("ReadableStream.from: expected an iterable");
    const it = m.call(iterable);
    if (Object(it) !== it) throw new TypeError("ReadableStream.from: the iterator is not an object");
    const next = it.next;
    const result = (r) => {
      if (Object(r) !== r) throw new TypeError("ReadableStream.from: an iterator result is not an object");
      return r;
    };
    return new ReadableStream(
      {
        async pull(c) {
          const r = result(await next.call(it));
          if (r.done) c.close();
          else c.enqueue(isAsync ? r.value : await r.value);
        },
        async cancel(reason) {
          if (it.return !== undefined && it.return !== null) result(await it.return(reason));
        },
      },
      { highWaterMark: 0 },
    );
  }
  get locked() {
    return this.#s.reader !== null;
  }
  cancel(reason) {
    if (this.#s.reader !== null) return PromiseReject(new TypeError("the stream is locked to a reader"));
    return rsCancel(this.#s, reason);
  }
  getReader(options) {
    if (options?.mode !== undefined) throw new TypeError(`getReader: mode ${options.mode} is not supported`);
    return new ReadableStreamDefaultReader(this);
  }
  pipeTo(dest, options = {}) {
    return pipeTo(this, dest, options);
  }
  pipeThrough(transform, options = undefined) {
    const s = this.#s;
    // WebIDL: the pair's members in lexicographic order, each brand-checked
    // as it is read, then the options, all before the locks are looked at.
    if (transform === null || (typeof transform !== "object" && typeof transform !== "function")) {
      throw new TypeError("pipeThrough: the transform must be an object");
    }
    const readable = transform.readable;
    if (!isReadableStream(readable)) throw new TypeError("pipeThrough: transform.readable is not a ReadableStream");
    const writable = transform.writable;
    const w = wsOf(writable);
    const opts = pipeOptions(options);
    if (s.reader !== null) throw new TypeError("pipeThrough: the source stream is locked");
    if (w.writer !== null) throw new TypeError("pipeThrough: the destination stream is locked");
    PromisePrototypeCatch(pipeTo(this, writable, opts), noop);
    return readable;
  }
  tee() {
    return tee(this);
  }
  values(options) {
    return iterate(rsAcquireReader(this.#s), !!options?.preventCancel);
  }
  [Symbol.asyncIterator](options) {
    return this.values(options);
  }
}

// StreamPipeOptions as a WebIDL dictionary: members read once, in
// lexicographic order, into a record the tenant cannot reach.
function pipeOptions(options) {
  if (options === undefined || options === null) return { __proto__: null };
  if (typeof options !== "object" && typeof options !== "function") {
    throw new TypeError("the pipe options must be an object");
  }
  const preventAbort = !!options.preventAbort;
  const preventCancel = !!options.preventCancel;
  const preventClose = !!options.preventClose;
  const signal = options.signal;
  if (signal !== undefined && !isAbortSignal(signal)) throw new TypeError("options.signal is not an AbortSignal");
  return { __proto__: null, preventAbort, preventCancel, preventClose, signal };
}

function pipeTo(source, dest, options) {
  try {
    const s = rsOf(source);
    const w = wsOf(dest);
    if (s.reader !== null) throw new TypeError("pipeTo: the source stream is locked");
    if (w.writer !== null) throw new TypeError("pipeTo: the destination stream is locked");
    const signal = options == null ? undefined : options.signal;
    if (signal !== undefined && !isAbortSignal(signal)) {
      throw new TypeError("pipeTo: options.signal is not an AbortSignal");
    }
    return pipe(rsAcquireReader(s), wsAcquireWriter(w), options ?? {});
  } catch (e) {
    return PromiseReject(e);
  }
}

// The async iterator of values(): reads in order (one read at a time) and
// lets go of the stream at its end; return() cancels it unless prevented.
function iterate(r, preventCancel) {
  let last = PromiseResolve();
  let finished = false;
  const finish = () => {
    finished = true;
    rsReleaseReader(r);
  };
  const step = () =>
    finished
      ? { value: undefined, done: true }
      : PromisePrototypeThen(
          rsRead(r.stream),
          (result) => {
            if (result.done) finish();
            return result;
          },
          (e) => {
            finish();
            throw e;
          },
        );
  return {
    next() {
      return (last = PromisePrototypeThen(last, step, step));
    },
    return(value) {
      const stop = () => {
        if (finished) return { value, done: true };
        const cancelled = preventCancel ? undefined : rsCancel(r.stream, value);
        finish();
        return PromisePrototypeThen(PromiseResolve(cancelled), () => ({ value, done: true }));
      };
      return (last = PromisePrototypeThen(last, stop, stop));
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

// Two streams that each see every chunk of `stream` (read as either needs
// one); the source is cancelled once both are.
function tee(stream) {
  const r = rsAcquireReader(rsOf(stream));
  const branches = [null, null]; // their states
  const canceled = [false, false];
  const reasons = [];
  const cancelled = deferred();
  let reading = false;
  let readAgain = false;
  const pull = () => {
    if (reading) {
      readAgain = true;
      return;
    }
    reading = true;
    // As the spec's chunk steps do, the branches get the chunk in a microtask.
    const later = (f) => PromisePrototypeThen(PromiseResolve(), f);
    rsReadInto(r.stream, {
      __proto__: null,
      chunk: (value) =>
        later(() => {
          for (let i = 0; i < 2; i++) if (!canceled[i]) rsEnqueue(branches[i], value);
          reading = false;
          if (readAgain) {
            readAgain = false;
            pull();
          }
        }),
      close: () =>
        later(() => {
          for (let i = 0; i < 2; i++) if (!canceled[i]) rsRequestClose(branches[i]);
          if (!canceled[0] || !canceled[1]) cancelled.resolve();
        }),
      error: noop, // `closed` rejects too: handled below
    });
  };
  const branch = (i) =>
    new ReadableStream({
      pull,
      cancel(reason) {
        canceled[i] = true;
        reasons[i] = reason;
        if (canceled[1 - i]) cancelled.resolve(rsCancel(r.stream, reasons));
        return cancelled.promise;
      },
    });
  const streams = [];
  for (let i = 0; i < 2; i++) {
    streams[i] = branch(i);
    branches[i] = rsOf(streams[i]);
  }
  PromisePrototypeCatch(r.closed.promise, (e) => {
    rsError(branches[0], e);
    rsError(branches[1], e);
    if (!canceled[0] || !canceled[1]) cancelled.resolve();
  });
  return streams;
}

// pipeTo: one chunk at a time, as the destination is ready for it; when
// either side fails or the source ends, the other side is told as the
// options allow, and the pipe settles accordingly. Works on the reader's
// and the writer's internal records, never their public methods.
async function pipe(r, wr, options) {
  const preventClose = !!options.preventClose;
  const preventAbort = !!options.preventAbort;
  const preventCancel = !!options.preventCancel;
  const w = wr.stream;
  const fail = (side) => (error) => ({ __proto__: null, side, error });
  // Settles only if the source fails (a promise returned from a reaction
  // would be adopted through its `then`).
  const sourceFailure = deferred();
  PromisePrototypeThen(r.closed.promise, noop, (e) => sourceFailure.resolve(fail("source")(e)));
  const sourceFailed = sourceFailure.promise;
  const destClosed = () => fail("dest")(new TypeError("the destination stream is closed"));
  const destFailed = PromisePrototypeThen(wr.closed.promise, destClosed, fail("dest"));
  let end = w.closeRequest !== null || w.state === "closed" ? destClosed() : null;
  // options.signal: aborting it ends the pipe with its reason, told to both
  // sides as the prevent* options allow.
  const signal = options.signal;
  const aborted = deferred();
  if (signal !== undefined) {
    if (signal.aborted) end = fail("abort")(signal.reason);
    else addAbortAlgorithm(signal, () => aborted.resolve(fail("abort")(signal.reason)));
  }
  let lastWrite = PromiseResolve();
  while (end === null) {
    const ready = PromisePrototypeThen(wr.ready.promise, () => null, fail("dest"));
    end = await race([ready, sourceFailed, destFailed, aborted.promise]);
    if (end !== null) break;
    const read = await race([PromisePrototypeCatch(rsReadRecord(r.stream), fail("source")), destFailed, aborted.promise]);
    if (read.side !== undefined) end = read;
    else if (read.done) end = { __proto__: null, side: "done" };
    else lastWrite = PromisePrototypeCatch(wsWrite(w, read.value), noop);
  }
  try {
    if (end.side === "done") {
      if (!preventClose) await (wr.stream ? wsClose(wr.stream) : PromiseReject(released()));
      return;
    }
    if (end.side === "abort") {
      await lastWrite;
      const actions = [];
      if (!preventAbort && wr.stream) ArrayPrototypePush(actions, wsAbort(wr.stream, end.error));
      if (!preventCancel && r.stream) ArrayPrototypePush(actions, rsCancel(r.stream, end.error));
      for (let i = 0; i < actions.length; i++) await actions[i];
    } else if (end.side === "source") {
      await lastWrite;
      if (!preventAbort) await (wr.stream ? wsAbort(wr.stream, end.error) : PromiseReject(released()));
    } else if (!preventCancel) {
      await (r.stream ? rsCancel(r.stream, end.error) : PromiseReject(new TypeError("the reader's lock was released")));
    }
    throw end.error;
  } finally {
    wsReleaseWriter(wr);
    rsReleaseReader(r);
  }
}

// A one-chunk stream over a copy of `bytes`, which it remembers while it is
// untouched (see wholeBytes).
function bytesStream(bytes) {
  const copy = copyBytes(bytes);
  const stream = new ReadableStream();
  const s = rsOf(stream);
  if (TypedArrayPrototypeGetLength(copy) > 0) rsEnqueue(s, copy);
  rsRequestClose(s);
  s.whole = copy;
  return stream;
}

// The bytes of a bytesStream() nobody has locked or read yet, else null.
function wholeBytes(stream) {
  const s = rsOf(stream);
  return s.whole !== null && !s.disturbed && s.reader === null ? s.whole : null;
}

// -- WritableStream

const CLOSE = { __proto__: null }; // the close request's place in a writable stream's queue

function wsDesiredSize(w) {
  return w.state === "writable" ? w.hwm - w.queueSize : w.state === "closed" ? 0 : null;
}

// Backpressure while the queue is full; a closing stream has none.
function wsUpdateBackpressure(w) {
  if (w.state !== "writable") return;
  const bp = w.closeRequest === null && wsDesiredSize(w) <= 0;
  if (bp === w.backpressure) return;
  w.backpressure = bp;
  const wr = w.writer;
  if (wr !== null) {
    if (bp) wr.ready = deferred();
    else wr.ready.resolve();
  }
}

function wsStartErroring(w, reason) {
  w.state = "erroring";
  w.error = reason;
  if (w.writer !== null) w.writer.ready = rejectOrReplace(w.writer.ready, reason);
  if (!w.busy && w.started) wsFinishErroring(w);
}

// Once no write or close is under way: fails the queued writes, runs a
// requested abort and fails the close and `closed`.
function wsFinishErroring(w) {
  w.state = "errored";
  const e = w.error;
  const queued = w.queue;
  w.queue = [];
  for (let i = 0; i < queued.length; i++) if (queued[i] !== CLOSE) queued[i].done.reject(e);
  w.queueSize = 0;
  const rejectClose = () => {
    if (w.closeRequest !== null) w.closeRequest.reject(e);
    w.closeRequest = null;
    if (w.writer !== null) w.writer.closed.reject(e);
  };
  const abort = w.pendingAbort;
  w.pendingAbort = null;
  if (abort === null) return rejectClose();
  if (abort.wasErroring) {
    abort.done.reject(e);
    return rejectClose();
  }
  PromisePrototypeThen(
    w.abort(abort.reason),
    () => {
      abort.done.resolve();
      rejectClose();
    },
    (err) => {
      abort.done.reject(err);
      rejectClose();
    },
  );
}

function wsFailed(w, e) {
  if (w.state === "writable") wsStartErroring(w, e);
  else wsFinishErroring(w);
}

// Hands the sink the next write or the close, one at a time, in order.
function wsAdvance(w) {
  if (!w.started || w.busy) return;
  if (w.state === "erroring") return wsFinishErroring(w);
  if (w.queue.length === 0) return;
  w.busy = true;
  const item = w.queue[0];
  if (item === CLOSE) {
    ArrayPrototypeShift(w.queue);
    PromisePrototypeThen(
      w.close(),
      () => {
        w.busy = false;
        w.closeRequest.resolve();
        w.closeRequest = null;
        if (w.state === "erroring") {
          // An abort that came during the close is moot: the close won.
          w.error = undefined;
          if (w.pendingAbort !== null) w.pendingAbort.done.resolve();
          w.pendingAbort = null;
        }
        w.state = "closed";
        if (w.writer !== null) w.writer.closed.resolve();
      },
      (e) => {
        w.busy = false;
        w.closeRequest.reject(e);
        w.closeRequest = null;
        if (w.pendingAbort !== null) w.pendingAbort.done.reject(e);
        w.pendingAbort = null;
        wsFailed(w, e);
      },
    );
    return;
  }
  PromisePrototypeThen(
    w.write(item.chunk, w.controller),
    () => {
      w.busy = false;
      ArrayPrototypeShift(w.queue);
      w.queueSize = w.queue.length === 0 ? 0 : w.queueSize - item.size;
      item.done.resolve();
      wsUpdateBackpressure(w);
      wsAdvance(w);
    },
    (e) => {
      w.busy = false;
      ArrayPrototypeShift(w.queue);
      item.done.reject(e);
      wsFailed(w, e);
    },
  );
}

function wsWrite(w, chunk) {
  let size = 1;
  try {
    size = w.size(chunk);
  } catch (e) {
    if (w.state === "writable") wsStartErroring(w, e);
  }
  if (w.state === "errored" || w.state === "erroring") return PromiseReject(w.error);
  if (w.closeRequest !== null || w.state === "closed") {
    return PromiseReject(new TypeError("cannot write: the stream is closed or closing"));
  }
  const done = deferred();
  ArrayPrototypePush(w.queue, { __proto__: null, chunk, size, done });
  w.queueSize += size;
  wsUpdateBackpressure(w);
  wsAdvance(w);
  return done.promise;
}

function wsClose(w) {
  if (w.state === "closed" || w.state === "errored" || w.closeRequest !== null) {
    return PromiseReject(new TypeError("cannot close: the stream is closed, closing or errored"));
  }
  const close = (w.closeRequest = deferred());
  wsUpdateBackpressure(w);
  ArrayPrototypePush(w.queue, CLOSE);
  wsAdvance(w);
  return close.promise;
}

function wsAbort(w, reason) {
  if (w.state === "closed" || w.state === "errored") return PromiseResolve();
  if (w.pendingAbort !== null) return w.pendingAbort.done.promise;
  const wasErroring = w.state === "erroring";
  const done = deferred();
  w.pendingAbort = { __proto__: null, done, reason: wasErroring ? undefined : reason, wasErroring };
  if (!wasErroring) wsStartErroring(w, reason);
  return done.promise;
}

function wsAcquireWriter(w) {
  if (w.writer !== null) throw new TypeError("the stream is locked to a writer");
  const wr = { __proto__: null, stream: w, ready: deferred(), closed: deferred() };
  if (w.state === "writable") {
    if (!w.backpressure) wr.ready.resolve();
  } else if (w.state === "erroring") {
    wr.ready.reject(w.error);
  } else if (w.state === "closed") {
    wr.ready.resolve();
    wr.closed.resolve();
  } else {
    wr.ready.reject(w.error);
    wr.closed.reject(w.error);
  }
  w.writer = wr;
  return wr;
}

class WritableStreamDefaultController {
  #w;
  constructor(key, w) {
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
    this.#w = w;
  }
  error(e) {
    if (this.#w.state === "writable") wsStartErroring(this.#w, e);
  }
}

const released = () => new TypeError("the writer's lock was released");

class WritableStreamDefaultWriter {
  #wr;
  constructor(stream) {
    this.#wr = wsAcquireWriter(wsOf(stream));
  }
  get closed() {
    return this.#wr.closed.promise;
  }
  get ready() {
    return this.#wr.ready.promise;
  }
  get desiredSize() {
    if (this.#wr.stream === null) throw released();
    return wsDesiredSize(this.#wr.stream);
  }
  write(chunk) {
    const w = this.#wr.stream;
    return w ? wsWrite(w, chunk) : PromiseReject(released());
  }
  close() {
    const w = this.#wr.stream;
    return w ? wsClose(w) : PromiseReject(released());
  }
  abort(reason) {
    const w = this.#wr.stream;
    return w ? wsAbort(w, reason) : PromiseReject(released());
  }
  releaseLock() {
    wsReleaseWriter(this.#wr);
  }
}

function wsReleaseWriter(wr) {
  if (wr.stream === null) return;
  // The spec rejects both with the same TypeError.
  const error = released();
  wr.ready = rejectOrReplace(wr.ready, error);
  wr.closed = rejectOrReplace(wr.closed, error);
  wr.stream.writer = null;
  wr.stream = null;
}

class WritableStream {
  #w;
  static {
    wsOf = (x) => {
      try {
        return x.#w;
      } catch {
        throw new TypeError("expected a WritableStream");
      }
    };
  }
  constructor(sink = {}, strategy = {}) {
    sink = sink ?? {};
    if (sink.type !== undefined) throw new RangeError("WritableStream: sink.type is not supported");
    const { hwm, size } = strategyOf(strategy, 1);
    const w = (this.#w = {
      __proto__: null,
      state: "writable", // then "erroring", "errored" or "closed"
      error: undefined,
      writer: null,
      queue: [], // { chunk, size, done } or CLOSE
      queueSize: 0,
      hwm,
      size,
      started: false,
      busy: false, // a write or the close is under way
      backpressure: false,
      closeRequest: null,
      pendingAbort: null,
      write: method(sink, "write"),
      close: method(sink, "close"),
      abort: method(sink, "abort"),
      controller: null,
    });
    w.controller = new WritableStreamDefaultController(INTERNAL, w);
    wsUpdateBackpressure(w);
    callStart(
      sink,
      w.controller,
      () => {
        w.started = true;
        wsAdvance(w);
      },
      (e) => {
        w.started = true;
        wsFailed(w, e);
      },
    );
  }
  get locked() {
    return this.#w.writer !== null;
  }
  abort(reason) {
    if (this.#w.writer !== null) return PromiseReject(new TypeError("the stream is locked to a writer"));
    return wsAbort(this.#w, reason);
  }
  close() {
    if (this.#w.writer !== null) return PromiseReject(new TypeError("the stream is locked to a writer"));
    return wsClose(this.#w);
  }
  getWriter() {
    return new WritableStreamDefaultWriter(this);
  }
}

// -- TransformStream
// As in Workers, the readable side's highWaterMark defaults to 0: a write
// is transformed only once the reader has asked for more, so the writer
// runs at most one chunk ahead of the reader.

function tsSetBackpressure(t, bp) {
  if (t.change !== null) t.change.resolve();
  t.change = deferred();
  t.backpressure = bp;
}

// Errors the writable side and lets a write waiting for the reader go on.
function tsErrorWritable(t, e) {
  if (t.w.state === "writable") wsStartErroring(t.w, e);
  if (t.backpressure) tsSetBackpressure(t, false);
}

function tsError(t, e) {
  rsError(t.r, e);
  tsErrorWritable(t, e);
}

function tsEnqueue(t, chunk) {
  if (!rsCanEnqueue(t.r)) throw new TypeError("cannot enqueue: the readable side is closed or errored");
  try {
    rsEnqueue(t.r, chunk);
  } catch (e) {
    tsErrorWritable(t, e);
    throw t.r.error;
  }
  if (!rsShouldPull(t.r) && !t.backpressure) tsSetBackpressure(t, true);
}

class TransformStreamDefaultController {
  #t;
  constructor(key, t) {
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
    this.#t = t;
  }
  get desiredSize() {
    return rsDesiredSize(this.#t.r);
  }
  enqueue(chunk) {
    tsEnqueue(this.#t, chunk);
  }
  error(e) {
    tsError(this.#t, e);
  }
  terminate() {
    const t = this.#t;
    if (rsCanEnqueue(t.r)) rsRequestClose(t.r);
    tsErrorWritable(t, new TypeError("the TransformStream was terminated"));
  }
}

class TransformStream {
  #readable;
  #writable;
  constructor(transformer = {}, writableStrategy = {}, readableStrategy = {}) {
    transformer = transformer ?? {};
    if (transformer.readableType !== undefined || transformer.writableType !== undefined) {
      throw new RangeError("TransformStream: readableType and writableType are not supported");
    }
    const t = { __proto__: null, r: null, w: null, backpressure: false, change: null };
    const controller = new TransformStreamDefaultController(INTERNAL, t);
    const transform =
      transformer.transform === undefined
        ? method({ transform: (chunk) => tsEnqueue(t, chunk) }, "transform")
        : method(transformer, "transform");
    const flush = method(transformer, "flush");
    const cancel = method(transformer, "cancel");
    // Both sides start once transformer.start has.
    const started = deferred();
    this.#writable = new WritableStream(
      {
        start: () => started.promise,
        async write(chunk) {
          if (t.backpressure) {
            await t.change.promise;
            if (t.w.state === "erroring") throw t.w.error;
          }
          try {
            await transform(chunk, controller);
          } catch (e) {
            tsError(t, e);
            throw e;
          }
        },
        async close() {
          try {
            await flush(controller);
          } catch (e) {
            rsError(t.r, e);
            throw e;
          }
          if (t.r.state === "errored") throw t.r.error;
          if (rsCanEnqueue(t.r)) rsRequestClose(t.r);
        },
        abort(reason) {
          tsError(t, reason);
          return cancel(reason);
        },
      },
      writableStrategy,
    );
    this.#readable = new ReadableStream(
      {
        start: () => started.promise,
        pull() {
          tsSetBackpressure(t, false);
          return t.change.promise;
        },
        cancel(reason) {
          tsErrorWritable(t, reason);
          return cancel(reason);
        },
      },
      { highWaterMark: readableStrategy?.highWaterMark ?? 0, size: readableStrategy?.size },
    );
    t.w = wsOf(this.#writable);
    t.r = rsOf(this.#readable);
    tsSetBackpressure(t, true);
    const start = transformer.start;
    if (start !== undefined && typeof start !== "function") throw new TypeError("start must be a function");
    started.resolve(start === undefined ? undefined : ReflectApply(start, transformer, [controller]));
  }
  get readable() {
    return this.#readable;
  }
  get writable() {
    return this.#writable;
  }
}

// -- TextEncoderStream / TextDecoderStream

class TextEncoderStream {
  #ts;
  constructor() {
    // A chunk ending in half a surrogate pair waits for the other half.
    let pending = "";
    this.#ts = new TransformStream({
      transform(chunk, c) {
        let s = pending + String(chunk);
        pending = "";
        const last = s.charCodeAt(s.length - 1);
        if (last >= 0xd800 && last <= 0xdbff) {
          pending = s.slice(-1);
          s = s.slice(0, -1);
        }
        if (s !== "") c.enqueue(utf8Encode(s));
      },
      flush(c) {
        // A lone lead surrogate: the host writes it as U+FFFD.
        if (pending !== "") c.enqueue(utf8Encode(pending));
      },
    });
  }
  get encoding() {
    return "utf-8";
  }
  get readable() {
    return this.#ts.readable;
  }
  get writable() {
    return this.#ts.writable;
  }
}

class TextDecoderStream {
  #ts;
  #decoder;
  constructor(label = "utf-8", options = {}) {
    // decode(…, { stream: true }) keeps a character split across chunks.
    const decoder = (this.#decoder = new TextDecoder(label, options));
    this.#ts = new TransformStream({
      transform(chunk, c) {
        if (!isBufferSource(chunk)) throw new TypeError("TextDecoderStream: chunks must be BufferSources");
        const s = textDecode(decoder, chunk, true);
        if (s !== "") c.enqueue(s);
      },
      flush(c) {
        const s = textDecode(decoder, undefined, false);
        if (s !== "") c.enqueue(s);
      },
    });
  }
  get encoding() {
    return this.#decoder.encoding;
  }
  get fatal() {
    return this.#decoder.fatal;
  }
  get ignoreBOM() {
    return this.#decoder.ignoreBOM;
  }
  get readable() {
    return this.#ts.readable;
  }
  get writable() {
    return this.#ts.writable;
  }
}

// @part blob
// ------------------------------------------------------------- Blob, File --
// The File API's Blob and File over bytes in the QuickJS heap: a part is a
// string (as UTF-8), a BufferSource (copied) or another Blob.

let blobBytes; // Blob -> its Uint8Array (throws on anything else)

// A Blob's type: lowercased, or "" when it has a character outside U+0020..U+007E.
function blobType(type) {
  type = String(type);
  for (let i = 0; i < type.length; i++) {
    const c = StringPrototypeCharCodeAt(type, i);
    if (c < 0x20 || c > 0x7e) return "";
  }
  return StringPrototypeToLowerCase(type);
}

// "Convert line endings to native", native being LF here.
function nativeEndings(s) {
  let at = StringPrototypeIndexOf(s, "\r");
  if (at < 0) return s;
  const pieces = [];
  let from = 0;
  while (at >= 0) {
    ArrayPrototypePush(pieces, StringPrototypeSlice(s, from, at));
    from = StringPrototypeCharCodeAt(s, at + 1) === 0x0a ? at + 2 : at + 1;
    at = StringPrototypeIndexOf(s, "\r", from);
  }
  ArrayPrototypePush(pieces, StringPrototypeSlice(s, from));
  return ArrayPrototypeJoin(pieces, "\n");
}

class Blob {
  #bytes;
  #type;
  static {
    blobBytes = (b) => b.#bytes;
  }
  constructor(parts = undefined, options = undefined) {
    const chunks = [];
    let size = 0;
    if (parts !== undefined) {
      // sequence<BlobPart>: @@iterator read once, each part converted as
      // it comes (strings kept as such until `endings` is known).
      const method = parts === null || typeof parts !== "object" ? undefined : parts[Symbol.iterator];
      if (typeof method !== "function") throw new TypeError("Blob: parts must be a sequence");
      for (const part of { [Symbol.iterator]: () => ReflectApply(method, parts, []) }) {
        let chunk;
        try {
          chunk = part.#bytes;
        } catch {
          chunk = isBufferSource(part) ? copyBytes(part) : usvString(part);
        }
        ArrayPrototypePush(chunks, chunk);
      }
    }
    // BlobPropertyBag, its members in lexicographic order.
    if (options !== undefined && options !== null && typeof options !== "object" && typeof options !== "function") {
      throw new TypeError("Blob: options must be an object");
    }
    const endings = options == null ? undefined : options.endings;
    let native = false;
    if (endings !== undefined) {
      const e = String(endings);
      if (e === "native") native = true;
      else if (e !== "transparent") throw new TypeError(`Blob: endings must be "transparent" or "native"`);
    }
    const type = options == null ? undefined : options.type;
    for (let i = 0; i < chunks.length; i++) {
      if (typeof chunks[i] === "string") chunks[i] = utf8Encode(native ? nativeEndings(chunks[i]) : chunks[i]);
      size += TypedArrayPrototypeGetLength(chunks[i]);
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (let i = 0; i < chunks.length; i++) {
      TypedArrayPrototypeSet(out, chunks[i], at);
      at += TypedArrayPrototypeGetLength(chunks[i]);
    }
    this.#bytes = out;
    this.#type = type !== undefined ? blobType(type) : "";
  }
  get size() {
    return TypedArrayPrototypeGetLength(this.#bytes);
  }
  get type() {
    return this.#type;
  }
  slice(start = undefined, end = undefined, contentType = undefined) {
    const size = TypedArrayPrototypeGetLength(this.#bytes);
    const clamp = (v, dflt) => {
      if (v === undefined) return dflt;
      v = Math.trunc(Number(v)) || 0;
      return v < 0 ? MathMax(size + v, 0) : MathMin(v, size);
    };
    const from = clamp(start, 0);
    const to = clamp(end, size);
    const b = new Blob([TypedArrayPrototypeSubarray(this.#bytes, from, MathMax(from, to))]);
    b.#type = contentType === undefined ? "" : blobType(contentType);
    return b;
  }
  async arrayBuffer() {
    return TypedArrayPrototypeGetBuffer(copyBytes(this.#bytes));
  }
  async bytes() {
    return copyBytes(this.#bytes);
  }
  async text() {
    return utf8Decode(this.#bytes, false);
  }
  stream() {
    return bytesStream(this.#bytes);
  }
  get [Symbol.toStringTag]() {
    return "Blob";
  }
}

let isFile; // by its private field, not instanceof

class File extends Blob {
  #name;
  #lastModified;
  static {
    isFile = (v) => {
      try {
        v.#name;
        return true;
      } catch {
        return false;
      }
    };
  }
  constructor(bits, name, options = undefined) {
    if (arguments.length < 2) throw new TypeError("File: bits and name are required");
    super(bits, options);
    this.#name = String(name);
    this.#lastModified = options && options.lastModified !== undefined ? Number(options.lastModified) : DateNow();
  }
  get name() {
    return this.#name;
  }
  get lastModified() {
    return this.#lastModified;
  }
  get [Symbol.toStringTag]() {
    return "File";
  }
}

// Whether `v` is a Blob (by its private field).
function isBlob(v) {
  try {
    blobBytes(v);
    return true;
  } catch {
    return false;
  }
}

// @part core
// ------------------------------------------------------------------- Body --

const TEXT_PLAIN_UTF8 = "text/plain;charset=UTF-8";

// Returns [bytes, a ReadableStream or null; default content-type or null].
function extractBody(body) {
  if (body === undefined || body === null) return [null, null];
  if (typeof body === "string") return [utf8Encode(body), TEXT_PLAIN_UTF8];
  if (isBufferSource(body)) return [copyBytes(body), null];
  if (isBlob(body)) return [copyBytes(blobBytes(body)), body.type === "" ? null : body.type];
  if (isURLSearchParams(body)) {
    return [utf8Encode(body.toString()), "application/x-www-form-urlencoded;charset=UTF-8"];
  }
  if (isFormData(body)) return formDataBody(body);
  if (isReadableStream(body)) {
    const s = rsOf(body);
    if (s.reader !== null || s.disturbed) throw new TypeError("the body stream is locked or has been read");
    return [body, null];
  }
  return [utf8Encode(String(body)), TEXT_PLAIN_UTF8];
}

const EMPTY = new Uint8Array(0);

// Reads a body stream to its end; chunks are bytes as in `chunkBytes`.
async function readAll(stream) {
  const r = rsAcquireReader(rsOf(stream));
  const parts = [];
  let total = 0;
  for (;;) {
    const read = await rsReadRecord(r.stream);
    if (read.done) break;
    let bytes;
    try {
      bytes = chunkBytes(read.value);
    } catch (e) {
      PromisePrototypeCatch(rsCancel(r.stream, e), noop);
      throw e;
    }
    ArrayPrototypePush(parts, bytes);
    total += TypedArrayPrototypeGetLength(bytes);
  }
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    TypedArrayPrototypeSet(out, parts[i], at);
    at += TypedArrayPrototypeGetLength(parts[i]);
  }
  return out;
}

// The prelude's own access to bodies (set in Body's static block).
let bodyInit; // (body, init body, headers): takes the init body
let bodyPeekBytes; // the bytes; for a stream, only those of an untouched bytesStream()
let bodyStreamOf; // the ReadableStream when streamed, else null
let bodyToCopy;
let bodyCloneTo;
let bodyUsed;
let bodyTakeBytes; // (body, fresh Uint8Array nobody else holds): the body, uncopied
let bodyPeekText; // the body's string, while a string body is not yet encoded; else null

// A string body is kept as the string until something needs its bytes: a
// hello's Response hands it to the host, which encodes it once, in Rust.

class Body {
  #bytes = null; // the body, when it is bytes; a string body until it is encoded
  #stream = null; // the body, when it is streamed; for bytes, made by `body`
  #used = false;
  // Encodes a string body into #bytes, once, before anything reads #bytes.
  static #encode(self) {
    if (typeof self.#bytes === "string") self.#bytes = utf8Encode(self.#bytes);
  }
  static {
    // With `headers` null (a Response whose Headers are made on first use),
    // the default content-type is returned instead of set.
    bodyInit = (self, body, headers) => {
      if (typeof body === "string") {
        self.#bytes = body;
        if (headers === null) return TEXT_PLAIN_UTF8;
        headersSetIfAbsent(headers, "content-type", TEXT_PLAIN_UTF8);
        return null;
      }
      const extracted = extractBody(body);
      const b = extracted[0];
      const type = extracted[1];
      if (isReadableStream(b)) self.#stream = b;
      else self.#bytes = b;
      if (headers === null) return type;
      if (type === TEXT_PLAIN_UTF8) headersSetIfAbsent(headers, "content-type", type);
      else if (type !== null && !headersHas(headers, "content-type")) headersSet(headers, "content-type", type);
      return null;
    };
    bodyPeekText = (self) => (typeof self.#bytes === "string" ? self.#bytes : null);
    bodyUsed = (self) => self.#used || (self.#stream !== null && rsOf(self.#stream).disturbed);
    bodyTakeBytes = (self, bytes) => {
      self.#bytes = bytes;
    };
    bodyPeekBytes = (self) => {
      Body.#encode(self);
      return self.#bytes ?? (self.#stream === null ? null : wholeBytes(self.#stream));
    };
    // A stream made over bytes (`new Response(request.body)`) that nobody
    // has touched is still bytes: the host takes them from bodyPeekBytes()
    // and need not stream.
    bodyStreamOf = (self) => {
      const stream = self.#stream;
      return self.#bytes === null && stream !== null && wholeBytes(stream) === null ? stream : null;
    };
    // The body of a Request made from this one: the bytes, or the stream,
    // which then moves to it (leaving this body used).
    bodyToCopy = (self) => {
      Body.#encode(self);
      if (self.#bytes !== null || self.#stream === null) return self.#bytes;
      if (bodyUsed(self)) throw new TypeError("Body has already been used");
      self.#used = true;
      return self.#stream;
    };
    // Gives `to`, a fresh Request or Response, this body too: the same
    // bytes, or one branch of a tee of the stream (this body keeps the other).
    bodyCloneTo = (self, to) => {
      Body.#encode(self);
      if (bodyUsed(self) || (self.#stream !== null && rsOf(self.#stream).reader !== null)) {
        throw new TypeError("Body has already been used");
      }
      if (self.#bytes !== null || self.#stream === null) {
        to.#bytes = self.#bytes;
      } else {
        const branches = tee(self.#stream);
        self.#stream = branches[0];
        to.#stream = branches[1];
      }
    };
  }
  #consume() {
    Body.#encode(this);
    if (bodyUsed(this)) return PromiseReject(new TypeError("Body has already been used"));
    if (this.#stream === null) {
      // A null body has nothing to disturb: reading it gives nothing and
      // leaves bodyUsed false (Fetch, "consume body").
      if (this.#bytes === null) return PromiseResolve(EMPTY);
      this.#used = true;
      return PromiseResolve(this.#bytes);
    }
    if (rsOf(this.#stream).reader !== null) return PromiseReject(new TypeError("the body stream is locked"));
    this.#used = true;
    return readAll(this.#stream);
  }
  get bodyUsed() {
    return bodyUsed(this);
  }
  get body() {
    Body.#encode(this);
    if (this.#stream === null && this.#bytes !== null) {
      this.#stream = bytesStream(this.#used ? EMPTY : this.#bytes);
      // Bytes already consumed by text() etc. leave a read stream.
      if (this.#used) rsOf(this.#stream).disturbed = true;
    }
    return this.#stream;
  }
  async arrayBuffer() {
    return TypedArrayPrototypeGetBuffer(copyBytes(await this.#consume()));
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
    const type = this.headers.get("content-type");
    return parseFormBody(await this.#consume(), type);
  }
  async blob() {
    const bytes = await this.#consume();
    const type = this.headers.get("content-type");
    return new Blob([bytes], { type: type === null ? "" : type });
  }
}

// ---------------------------------------------------------------- Request --

const METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"];

let isRequest;
// The request the host is handing the handler: a Request made from it
// (`new Request(FROM_HOST)`, which only the prelude can write) takes its
// method, its URL (already parsed and serialized by the host) and its body
// (a fresh Uint8Array) as they are, and builds its Headers from the wire
// pairs only when something asks for them.
const FROM_HOST = { __proto__: null };
// While FROM_HOST is built: its method, href, wire pairs and body.
let fromHostMethod = null;
let fromHostHref = null;
let fromHostPairs = null;
let fromHostBody = null;

class Request extends Body {
  #method;
  #url;
  #headers; // the Headers, or the wire pairs they are made of on first use
  constructor(input, init = undefined) {
    super();
    if (input === FROM_HOST) {
      this.#method = fromHostMethod;
      this.#url = fromHostHref;
      this.#headers = fromHostPairs;
      if (fromHostBody !== null) bodyTakeBytes(this, fromHostBody);
      fromHostMethod = fromHostHref = fromHostPairs = fromHostBody = null;
      return;
    }
    init = init || {};
    let body = init.body;
    if (isRequest(input)) {
      this.#method = init.method !== undefined ? String(init.method) : input.#method;
      this.#url = input.#url;
      this.#headers = new Headers(init.headers !== undefined ? init.headers : input.#headersNow());
      if (body === undefined) body = bodyToCopy(input);
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
    bodyInit(this, body, this.#headers);
  }
  #headersNow() {
    const pairs = this.#headers;
    if (ArrayIsArray(pairs)) {
      const headers = new Headers();
      for (let i = 0; i < pairs.length; i += 2) headersAppend(headers, pairs[i], pairs[i + 1]);
      this.#headers = headers;
    }
    return this.#headers;
  }
  static {
    isRequest = (x) => {
      try {
        x.#method;
        return true;
      } catch {
        return false;
      }
    };
  }
  get method() {
    return this.#method;
  }
  get url() {
    return this.#url;
  }
  get headers() {
    return this.#headersNow();
  }
  get redirect() {
    return "follow";
  }
  get signal() {
    return undefined;
  }
  clone() {
    const r = new Request(this, { body: null });
    bodyCloneTo(this, r);
    return r;
  }
  get [Symbol.toStringTag]() {
    return "Request";
  }
}

// --------------------------------------------------------------- Response --

// The status of `x`, or -1 when `x` is not a Response (by its brand).
let responseStatus;
// A Response's headers as wire pairs [name, value, ...], without making
// Headers that nobody asked for.
let responseWirePairs;
let responseMakeError; // turns a fresh Response into a network error

// `init` when none is given: no prototype, so a tenant's Object.prototype
// adds no status or headers (WebIDL reads no properties of an undefined
// dictionary).
const NO_INIT = ObjectFreeze({ __proto__: null });

class Response extends Body {
  #status;
  #statusText;
  // The Headers; until something asks for them, a Response made without
  // `init.headers` has null, or TEXT_PLAIN_UTF8 (its default content-type)
  // for a string body, and builds none.
  #headers;
  constructor(body = null, init = undefined) {
    super();
    if (!init) init = NO_INIT;
    const status = init.status === undefined ? 200 : Number(init.status);
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new RangeError(`Response status ${init.status} is outside 200..599`);
    }
    this.#status = status;
    this.#statusText = init.statusText === undefined ? "" : String(init.statusText);
    const headers = init.headers;
    this.#headers = headers === undefined ? null : new Headers(headers);
    if ((status === 204 || status === 205 || status === 304) && body !== null && body !== undefined) {
      throw new TypeError(`Response with status ${status} cannot have a body`);
    }
    const type = bodyInit(this, body, this.#headers);
    if (type === TEXT_PLAIN_UTF8) this.#headers = type;
    else if (type !== null) {
      // Another body's type (a Blob's, a form's) is checked and set now, as
      // with given headers.
      this.#headers = new Headers();
      headersSet(this.#headers, "content-type", type);
    }
  }
  #headersNow() {
    const type = this.#headers;
    if (type === null || typeof type === "string") {
      const headers = new Headers();
      if (type !== null) headersSetIfAbsent(headers, "content-type", type);
      this.#headers = headers;
    }
    return this.#headers;
  }
  static {
    responseMakeError = (r) => {
      r.#status = 0; // the type "error"
      headersFreeze(r.#headersNow());
      return r;
    };
    responseStatus = (x) => (x !== null && typeof x === "object" && #status in x ? x.#status : -1);
    responseWirePairs = (r) => {
      const h = r.#headers;
      if (h === null) return [];
      return typeof h === "string" ? ["content-type", h] : headersWirePairs(h);
    };
  }
  static json(data, init = {}) {
    const text = JSON.stringify(data);
    if (text === undefined) throw new TypeError("Response.json: value is not JSON-serializable");
    const headers = new Headers(init ? init.headers : undefined);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    return new Response(text, { ...(init || {}), headers });
  }
  static redirect(url, status = 302) {
    if (![301, 302, 303, 307, 308].includes(status)) {
      throw new RangeError(`Invalid redirect status ${status}`);
    }
    return new Response(null, { status, headers: { location: new URL(String(url)).href } });
  }
  // A network error: status 0, type "error", no body, immutable headers.
  // A fetch handler that returns one fails its request.
  static error() {
    return responseMakeError(new Response(null));
  }
  get status() {
    return this.#status;
  }
  // As given, "" by default (the Fetch standard); the wire's reason phrase
  // is the host's business.
  get statusText() {
    return this.#statusText;
  }
  get ok() {
    return this.#status >= 200 && this.#status <= 299;
  }
  get headers() {
    return this.#headersNow();
  }
  get redirected() {
    return false;
  }
  get type() {
    return this.#status === 0 ? "error" : "default";
  }
  get url() {
    return "";
  }
  clone() {
    const r = new Response(null, {
      status: this.#status,
      statusText: this.#statusText,
      headers: this.#headersNow(),
    });
    bodyCloneTo(this, r);
    return r;
  }
  get [Symbol.toStringTag]() {
    return "Response";
  }
}

// @part events
// ----------------------------------------------------------------- events --
// DOMException, Event, CustomEvent, EventTarget, AbortSignal and
// AbortController after the DOM standard. A tenant has one kind of event
// target (no tree), so dispatch is the at-target part of the algorithm:
// capturing listeners, then the others, in the order they were added.

const DOM_EXCEPTION_CODES = {
  __proto__: null, IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4,
  InvalidCharacterError: 5, NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9,
  InvalidStateError: 11, SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14,
  InvalidAccessError: 15, TypeMismatchError: 17, SecurityError: 18, NetworkError: 19,
  AbortError: 20, URLMismatchError: 21, QuotaExceededError: 22, TimeoutError: 23,
  InvalidNodeTypeError: 24, DataCloneError: 25,
};

class DOMException extends Error {
  #name;
  constructor(message = "", name = "Error") {
    super(String(message));
    this.#name = String(name);
  }
  get name() {
    return this.#name;
  }
  get code() {
    return DOM_EXCEPTION_CODES[this.#name] || 0;
  }
  get [Symbol.toStringTag]() {
    return "DOMException";
  }
}
// WebIDL: attributes are enumerable, and the legacy codes are constants on
// the interface object and its prototype.
// (Index loops, no `for...of`: this part may load after tenant code has
// patched the array iterator.)
ObjectDefineProperty(DOMException.prototype, "name", { __proto__: null, enumerable: true });
ObjectDefineProperty(DOMException.prototype, "code", { __proto__: null, enumerable: true });
// The legacy code of each name is its index + 1.
const DOM_EXCEPTION_LEGACY = [
  "INDEX_SIZE_ERR", "DOMSTRING_SIZE_ERR", "HIERARCHY_REQUEST_ERR", "WRONG_DOCUMENT_ERR",
  "INVALID_CHARACTER_ERR", "NO_DATA_ALLOWED_ERR", "NO_MODIFICATION_ALLOWED_ERR",
  "NOT_FOUND_ERR", "NOT_SUPPORTED_ERR", "INUSE_ATTRIBUTE_ERR", "INVALID_STATE_ERR",
  "SYNTAX_ERR", "INVALID_MODIFICATION_ERR", "NAMESPACE_ERR", "INVALID_ACCESS_ERR",
  "VALIDATION_ERR", "TYPE_MISMATCH_ERR", "SECURITY_ERR", "NETWORK_ERR",
  "ABORT_ERR", "URL_MISMATCH_ERR", "QUOTA_EXCEEDED_ERR", "TIMEOUT_ERR",
  "INVALID_NODE_TYPE_ERR", "DATA_CLONE_ERR",
];
for (let i = 0; i < DOM_EXCEPTION_LEGACY.length; i++) {
  const desc = { __proto__: null, value: i + 1, enumerable: true };
  ObjectDefineProperty(DOMException, DOM_EXCEPTION_LEGACY[i], desc);
  ObjectDefineProperty(DOMException.prototype, DOM_EXCEPTION_LEGACY[i], desc);
}

let eventRecord; // Event -> its internal state (throws on anything else)

class Event {
  #s;
  static {
    eventRecord = (e) => e.#s;
  }
  constructor(type, init = undefined) {
    if (arguments.length === 0) throw new TypeError("Event: the type is required");
    if (init !== undefined && init !== null && typeof init !== "object" && typeof init !== "function") {
      throw new TypeError("Event: init must be an object");
    }
    init = init || {};
    this.#s = {
      __proto__: null,
      type: String(type),
      bubbles: !!init.bubbles,
      cancelable: !!init.cancelable,
      composed: !!init.composed,
      target: null,
      currentTarget: null,
      phase: 0,
      stop: false,
      stopImmediate: false,
      canceled: false,
      inPassive: false,
      dispatching: false,
      trusted: false,
      timeStamp: DateNow(),
    };
    ObjectDefineProperty(this, "isTrusted", isTrustedDesc);
  }
  get type() {
    return this.#s.type;
  }
  get target() {
    return this.#s.target;
  }
  get srcElement() {
    return this.#s.target;
  }
  get currentTarget() {
    return this.#s.currentTarget;
  }
  get eventPhase() {
    return this.#s.phase;
  }
  get bubbles() {
    return this.#s.bubbles;
  }
  get cancelable() {
    return this.#s.cancelable;
  }
  get composed() {
    return this.#s.composed;
  }
  get defaultPrevented() {
    return this.#s.canceled;
  }
  get isTrusted() {
    return this.#s.trusted;
  }
  get timeStamp() {
    return this.#s.timeStamp;
  }
  get returnValue() {
    return !this.#s.canceled;
  }
  set returnValue(v) {
    if (!v) this.preventDefault();
  }
  get cancelBubble() {
    return this.#s.stop;
  }
  set cancelBubble(v) {
    if (v) this.#s.stop = true;
  }
  composedPath() {
    return this.#s.dispatching && this.#s.currentTarget !== null ? [this.#s.currentTarget] : [];
  }
  stopPropagation() {
    this.#s.stop = true;
  }
  stopImmediatePropagation() {
    this.#s.stop = true;
    this.#s.stopImmediate = true;
  }
  preventDefault() {
    if (this.#s.cancelable && !this.#s.inPassive) this.#s.canceled = true;
  }
  initEvent(type, bubbles = false, cancelable = false) {
    if (arguments.length === 0) throw new TypeError("initEvent: the type is required");
    const s = this.#s;
    if (s.dispatching) return;
    s.type = String(type);
    s.bubbles = !!bubbles;
    s.cancelable = !!cancelable;
    s.stop = s.stopImmediate = s.canceled = false;
    s.trusted = false;
    s.target = null;
  }
  get [Symbol.toStringTag]() {
    return "Event";
  }
}
// WebIDL [LegacyUnforgeable]: isTrusted is an own accessor of each event
// (one getter shared by all), not one on the prototype.
const isTrustedDesc = {
  __proto__: null,
  get: ReflectGetOwnPropertyDescriptor(Event.prototype, "isTrusted").get,
  enumerable: true,
  configurable: false,
};
delete Event.prototype.isTrusted;
for (let value = 0; value < 4; value++) {
  const name = ["NONE", "CAPTURING_PHASE", "AT_TARGET", "BUBBLING_PHASE"][value];
  const desc = { __proto__: null, value, enumerable: true };
  ObjectDefineProperty(Event, name, desc);
  ObjectDefineProperty(Event.prototype, name, desc);
}

class CustomEvent extends Event {
  #detail;
  constructor(type, init = undefined) {
    if (arguments.length === 0) throw new TypeError("CustomEvent: the type is required");
    super(type, init);
    this.#detail = init && init.detail !== undefined ? init.detail : null;
  }
  get detail() {
    return this.#detail;
  }
  initCustomEvent(type, bubbles = false, cancelable = false, detail = null) {
    if (arguments.length === 0) throw new TypeError("initCustomEvent: the type is required");
    if (eventRecord(this).dispatching) return;
    this.initEvent(type, bubbles, cancelable);
    this.#detail = detail;
  }
  get [Symbol.toStringTag]() {
    return "CustomEvent";
  }
}

// The event an error a listener throws is reported with, at the global.
class ErrorEvent extends Event {
  #message;
  #filename;
  #lineno;
  #colno;
  #error;
  constructor(type, init = undefined) {
    if (arguments.length === 0) throw new TypeError("ErrorEvent: the type is required");
    super(type, init);
    init = init ?? {};
    this.#colno = init.colno === undefined ? 0 : NumberToUint32(init.colno);
    this.#error = init.error;
    this.#filename = init.filename === undefined ? "" : usvString(init.filename);
    this.#lineno = init.lineno === undefined ? 0 : NumberToUint32(init.lineno);
    this.#message = init.message === undefined ? "" : String(init.message);
  }
  get message() {
    return this.#message;
  }
  get filename() {
    return this.#filename;
  }
  get lineno() {
    return this.#lineno;
  }
  get colno() {
    return this.#colno;
  }
  get error() {
    return this.#error;
  }
  get [Symbol.toStringTag]() {
    return "ErrorEvent";
  }
}
const NumberToUint32 = (v) => Number(v) >>> 0;

let targetListeners; // EventTarget -> its listener list
let addAbortAlgorithm; // (signal, fn): runs fn when the signal aborts

// { capture } of addEventListener's or removeEventListener's options.
const flattenCapture = (options) =>
  typeof options === "object" && options !== null ? !!options.capture : !!options;

// Runs `event`'s listeners on `target` (the DOM's dispatch, at target only).
function dispatch(target, event, trusted) {
  const s = eventRecord(event);
  if (s.dispatching) throw new DOMException("the event is already being dispatched", "InvalidStateError");
  s.dispatching = true;
  s.trusted = trusted;
  s.target = target;
  s.currentTarget = target;
  s.phase = 2;
  const list = ArrayPrototypeSlice(targetListeners(target));
  for (let pass = 0; pass < 2 && !s.stop; pass++) {
    const capture = pass === 0;
    for (let i = 0; i < list.length; i++) {
      const l = list[i];
      if (l.removed || l.type !== s.type || l.capture !== capture) continue;
      if (l.once) removeListener(target, l);
      s.inPassive = l.passive;
      try {
        const cb = l.callback;
        if (typeof cb === "function") ReflectApply(cb, target, [event]);
        else {
          const handle = cb.handleEvent;
          if (typeof handle !== "function") throw new TypeError("the listener has no handleEvent method");
          ReflectApply(handle, cb, [event]);
        }
      } catch (e) {
        reportError(e);
      }
      s.inPassive = false;
      if (s.stopImmediate) break;
    }
  }
  s.phase = 0;
  s.currentTarget = null;
  s.dispatching = false;
  s.stop = false;
  s.stopImmediate = false;
  return !s.canceled;
}

function removeListener(target, l) {
  l.removed = true;
  const list = targetListeners(target);
  for (let i = 0; i < list.length; i++) {
    if (list[i] === l) {
      ArrayPrototypeSplice(list, i, 1);
      return;
    }
  }
}

// An error thrown by a listener does not stop the dispatch: it is reported
// (HTML's "report an exception") as an `error` event at the global object
// and, unless a listener cancels that, to the tenant's log. An error thrown
// while one is being reported only goes to the log, so this cannot recurse.
let reportingError = false;
function reportError(e) {
  if (!reportingError) {
    reportingError = true;
    let handled = false;
    try {
      let message = "";
      try {
        message = e instanceof Error ? String(e.message) : "";
      } catch {}
      const event = new ErrorEvent("error", { __proto__: null, cancelable: true, error: e, message });
      handled = !dispatch(globalObject, event, true);
    } finally {
      reportingError = false;
    }
    if (handled) return;
  }
  logger("error: ")(e);
}

class EventTarget {
  #listeners = [];
  static {
    // The global object is an EventTarget too (WebIDL [Global], as in a
    // worker); its listeners are kept here.
    const globalListeners = [];
    targetListeners = (t) => (t === globalObject ? globalListeners : t.#listeners);
  }
  addEventListener(type, callback, options = undefined) {
    const target = this ?? globalObject; // WebIDL: a missing `this` is the global
    const list = targetListeners(target);
    if (typeof callback !== "function" && typeof callback !== "object" && callback !== undefined) {
      throw new TypeError("addEventListener: the listener must be a function or an object");
    }
    let capture = false;
    let passive = false;
    let once = false;
    let signal = null;
    if (typeof options === "object" && options !== null) {
      capture = !!options.capture;
      once = !!options.once;
      passive = !!options.passive;
      if (options.signal !== undefined) {
        signal = options.signal;
        if (!isAbortSignal(signal)) throw new TypeError("addEventListener: signal is not an AbortSignal");
      }
    } else {
      capture = !!options;
    }
    // Only now, the options converted (WebIDL): a null listener adds nothing.
    if (callback === null || callback === undefined) return;
    if (signal !== null && signal.aborted) return;
    type = String(type);
    for (let i = 0; i < list.length; i++) {
      const l = list[i];
      if (l.type === type && l.callback === callback && l.capture === capture) return;
    }
    const l = { __proto__: null, type, callback, capture, passive, once, removed: false };
    ArrayPrototypePush(list, l);
    if (signal !== null) addAbortAlgorithm(signal, () => removeListener(target, l));
  }
  removeEventListener(type, callback, options = undefined) {
    const target = this ?? globalObject;
    const list = targetListeners(target);
    const capture = flattenCapture(options);
    type = String(type);
    for (let i = 0; i < list.length; i++) {
      const l = list[i];
      if (l.type === type && l.callback === callback && l.capture === capture) {
        removeListener(target, l);
        return;
      }
    }
  }
  dispatchEvent(event) {
    const target = this ?? globalObject;
    targetListeners(target);
    eventRecord(event); // a TypeError for anything but an Event
    return dispatch(target, event, false);
  }
  get [Symbol.toStringTag]() {
    return "EventTarget";
  }
}

// An `on<type>` event handler attribute on `proto`: its listener is added
// the first time it is set, and calls whatever the attribute holds then.
function defineEventHandler(proto, type, handlers) {
  ObjectDefineProperty(proto, "on" + type, {
    __proto__: null,
    configurable: true,
    enumerable: true,
    get() {
      targetListeners(this);
      const h = WeakMapPrototypeGet(handlers, this);
      return h === undefined ? null : h.value;
    },
    set(value) {
      targetListeners(this);
      const v = typeof value === "function" || (typeof value === "object" && value !== null) ? value : null;
      let h = WeakMapPrototypeGet(handlers, this);
      if (h === undefined) {
        if (v === null) return;
        h = { value: v };
        WeakMapPrototypeSet(handlers, this, h);
        const target = this;
        this.addEventListener(type, function (event) {
          const f = h.value;
          if (typeof f === "function") return ReflectApply(f, target, [event]);
        });
      } else {
        h.value = v;
      }
    },
  });
}

let isAbortSignal;
let signalAbort;
let newSignal;

class AbortSignal extends EventTarget {
  #aborted = false;
  #reason = undefined;
  #algorithms = [];
  #dependents = [];
  static {
    isAbortSignal = (x) => {
      try {
        x.#aborted;
        return true;
      } catch {
        return false;
      }
    };
    addAbortAlgorithm = (s, fn) => void ArrayPrototypePush(s.#algorithms, fn);
    signalAbort = (s, reason) => {
      if (s.#aborted) return;
      s.#aborted = true;
      s.#reason = reason === undefined ? new DOMException("signal is aborted without reason", "AbortError") : reason;
      const algorithms = s.#algorithms;
      s.#algorithms = [];
      for (let i = 0; i < algorithms.length; i++) algorithms[i]();
      dispatch(s, new Event("abort"), true);
      const deps = s.#dependents;
      s.#dependents = [];
      for (let i = 0; i < deps.length; i++) signalAbort(deps[i], s.#reason);
    };
    newSignal = () => new AbortSignal(INTERNAL);
  }
  // A signal that aborts with the first of `signals` to abort.
  static any(signals) {
      const out = newSignal();
      const list = ArrayFrom(signals);
      for (let i = 0; i < list.length; i++) {
        if (!isAbortSignal(list[i])) throw new TypeError("AbortSignal.any: not an AbortSignal");
      }
      for (let i = 0; i < list.length; i++) {
        if (list[i].#aborted) {
          out.#aborted = true;
          out.#reason = list[i].#reason;
          return out;
        }
      }
      for (let i = 0; i < list.length; i++) ArrayPrototypePush(list[i].#dependents, out);
      return out;
  }
  constructor(key) {
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
    super();
  }
  static abort(reason = undefined) {
    const s = newSignal();
    signalAbort(s, reason);
    return s;
  }
  static timeout(ms) {
    ms = Number(ms);
    if (!(ms >= 0) || ms > Number.MAX_SAFE_INTEGER) throw new TypeError("AbortSignal.timeout: bad delay");
    const s = newSignal();
    setTimeout(() => signalAbort(s, new DOMException("signal timed out", "TimeoutError")), ms);
    return s;
  }
  get aborted() {
    return this.#aborted;
  }
  get reason() {
    return this.#reason;
  }
  throwIfAborted() {
    if (this.#aborted) throw this.#reason;
  }
  get [Symbol.toStringTag]() {
    return "AbortSignal";
  }
}
defineEventHandler(AbortSignal.prototype, "abort", new WeakMap());

class AbortController {
  #signal = newSignal();
  get signal() {
    return this.#signal;
  }
  abort(reason = undefined) {
    signalAbort(this.#signal, reason);
  }
  get [Symbol.toStringTag]() {
    return "AbortController";
  }
}
// The global object's own EventTarget methods (see EventTarget), defined on
// the global by the core, lazily like this part's classes.
const addEventListener = EventTarget.prototype.addEventListener;
const removeEventListener = EventTarget.prototype.removeEventListener;
const dispatchEvent = EventTarget.prototype.dispatchEvent;

// @part clone
// --------------------------------------------------------- structuredClone --
// The HTML structured clone of the values a tenant can make: primitives
// (not symbols), plain objects and arrays (own enumerable string keys),
// Date, RegExp, Map, Set, ArrayBuffer and its views, Error, the wrapper
// objects, and cycles among them. Functions, symbols, and anything else
// are a DataCloneError; `transfer` is not supported.
function structuredClone(value, options = undefined) {
  if (options !== undefined && options !== null && options.transfer !== undefined && ArrayFrom(options.transfer).length > 0) {
    throw new DOMException("structuredClone: transfer is not supported", "DataCloneError");
  }
  const memory = new Map();
  const clone = (v) => {
    if (typeof v === "symbol") throw new DOMException("structuredClone: a Symbol cannot be cloned", "DataCloneError");
    if (typeof v === "function") throw new DOMException("structuredClone: a function cannot be cloned", "DataCloneError");
    if (typeof v !== "object" || v === null) return v;
    if (MapPrototypeHas(memory, v)) return MapPrototypeGet(memory, v);
    const tag = ReflectApply(ObjectPrototypeToString, v, []);
    let out;
    if (isArrayBuffer(v)) {
      out = copyBytes(v).buffer;
      MapPrototypeSet(memory, v, out);
      return out;
    }
    if (ArrayBufferIsView(v)) {
      const range = viewRange(v);
      const buffer = clone(range[0]);
      const kind = typedArrayName(v);
      if (kind === undefined) out = new DataView(buffer, range[1], range[2]);
      else out = new globalThis[kind](buffer, range[1], TypedArrayPrototypeGetLength(v));
      MapPrototypeSet(memory, v, out);
      return out;
    }
    switch (tag) {
      case "[object Date]":
        out = new Date(DatePrototypeGetTime(v));
        break;
      case "[object RegExp]":
        out = new RegExp(v.source, v.flags);
        break;
      case "[object Boolean]":
      case "[object Number]":
      case "[object String]":
      case "[object BigInt]":
        out = Object(v.valueOf());
        break;
      case "[object Map]":
        out = new Map();
        MapPrototypeSet(memory, v, out);
        MapPrototypeForEach(v, (val, key) => MapPrototypeSet(out, clone(key), clone(val)));
        return out;
      case "[object Set]": {
        out = new Set();
        MapPrototypeSet(memory, v, out);
        const items = ArrayFrom(v);
        for (let i = 0; i < items.length; i++) out.add(clone(items[i]));
        return out;
      }
      case "[object Error]": {
        const name = v.name;
        const ctor = ["EvalError", "RangeError", "ReferenceError", "SyntaxError", "TypeError", "URIError"].includes(name) ? globalThis[name] : Error;
        out = new ctor(v.message === undefined ? undefined : String(v.message));
        if (v.stack !== undefined) out.stack = String(v.stack);
        break;
      }
      case "[object Array]":
        out = new Array(v.length);
        break;
      case "[object Object]":
        if (isPlain(v)) {
          out = {};
          break;
        }
      // falls through: a class instance or a platform object
      default:
        throw new DOMException(`structuredClone: ${tag} cannot be cloned`, "DataCloneError");
    }
    MapPrototypeSet(memory, v, out);
    if (tag === "[object Array]" || tag === "[object Object]") {
      const keys = ObjectKeys(v);
      for (let i = 0; i < keys.length; i++) out[keys[i]] = clone(v[keys[i]]);
    }
    return out;
  };
  return clone(value);
}

// An object literal or Object.create(null): what structuredClone takes as
// an ordinary object (instances of the prelude's classes are refused).
function isPlain(v) {
  const proto = Object.getPrototypeOf(v);
  return proto === null || proto === Object.prototype;
}

// @part subtle
// ---------------------------------------------------------- crypto.subtle --
// Web Crypto's digest (SHA-1, SHA-256, SHA-384, SHA-512) and HMAC keys,
// sign and verify. The hashing is the host's (js/subtle.rs, the RustCrypto
// sha1, sha2 and hmac crates); the algorithm normalization, the keys and
// the errors are the standard's, here. As the standard orders it, an
// operation normalizes its algorithm (which may run a tenant's getter)
// before it copies its data, and copies the data before it returns.

const HASHES = ["SHA-1", "SHA-256", "SHA-384", "SHA-512"];
// HMAC's default key length (bits): the hash's block size.
const HASH_BLOCK_BITS = { __proto__: null, "SHA-1": 512, "SHA-256": 512, "SHA-384": 1024, "SHA-512": 1024 };
const KEY_USAGES = ["encrypt", "decrypt", "sign", "verify", "deriveKey", "deriveBits", "wrapKey", "unwrapKey"];

const notSupported = (what) => new DOMException(`crypto.subtle: ${what} is not supported`, "NotSupportedError");

// The registered name an algorithm name matches, ASCII case-insensitively.
function registeredName(name, names) {
  const lower = StringPrototypeToLowerCase(name);
  for (let i = 0; i < names.length; i++) if (StringPrototypeToLowerCase(names[i]) === lower) return names[i];
  return undefined;
}

// The standard's "normalize an algorithm" for the operations Corral has:
// "digest" (the SHA family), and HMAC for "sign", "verify", "importKey" and
// "generateKey". Returns a null-prototype record.
function normalizeAlgorithm(alg, op) {
  if (typeof alg === "string") return normalizeAlgorithm({ name: alg }, op);
  if (alg === null || (typeof alg !== "object" && typeof alg !== "function")) {
    throw new TypeError("crypto.subtle: the algorithm must be an object or a string");
  }
  const rawName = alg.name;
  if (rawName === undefined) throw new TypeError("crypto.subtle: the algorithm has no name");
  const name = registeredName(domString(rawName), op === "digest" ? HASHES : ["HMAC"]);
  if (name === undefined) throw notSupported(`${domString(rawName)} for ${op}`);
  const out = { __proto__: null, name };
  if (name !== "HMAC") return out;
  if (op === "importKey" || op === "generateKey") {
    const hash = alg.hash;
    if (hash === undefined) throw new TypeError("crypto.subtle: HMAC needs a hash");
    out.hash = normalizeAlgorithm(hash, "digest").name;
    const length = alg.length;
    if (length !== undefined) {
      const n = Number(length);
      if (!NumberIsInteger(n) || n < 0 || n > 0xffffffff) throw new TypeError("crypto.subtle: bad HMAC length");
      out.length = n;
    }
  }
  return out;
}

// A copy of a BufferSource's bytes, as the standard's "get a copy of the
// bytes held by the buffer source" (a detached buffer holds none).
function bufferSourceCopy(v, what) {
  if (!isBufferSource(v)) throw new TypeError(`crypto.subtle: ${what} must be a BufferSource`);
  return copyBytes(isSharedArrayBuffer(v) ? new Uint8Array(v) : v);
}

const arrayBufferOf = (bytes) => TypedArrayPrototypeGetBuffer(bytes);

// The standard runs an operation's work "in parallel" and settles its
// promise from a later task: awaiting here (a plain value, so no `then` is
// looked up) puts that work after the microtasks already queued, so the
// promise never settles in the same turn as the call.
const inParallel = () => undefined;

let keyRecord; // CryptoKey -> its internal slots (throws on anything else)
let makeKey;

class CryptoKey {
  #s;
  constructor(key) {
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
  }
  static {
    keyRecord = (k) => k.#s;
    makeKey = (s) => {
      const k = new CryptoKey(INTERNAL);
      k.#s = s;
      return k;
    };
  }
  get type() {
    return this.#s.type;
  }
  get extractable() {
    return this.#s.extractable;
  }
  get algorithm() {
    // The same object each time, as the standard's cached attribute.
    return this.#s.algorithmObject;
  }
  get usages() {
    return this.#s.usagesObject;
  }
  get [Symbol.toStringTag]() {
    return "CryptoKey";
  }
}

// The usages given, checked against those allowed, in the standard's order.
function keyUsages(usages, allowed) {
  if (usages === null || typeof usages !== "object" || typeof usages[Symbol.iterator] !== "function") {
    throw new TypeError("crypto.subtle: keyUsages must be a sequence");
  }
  const out = [];
  for (const u of usages) {
    const usage = domString(u);
    if (!KEY_USAGES.includes(usage)) throw new TypeError(`crypto.subtle: ${usage} is not a key usage`);
    if (!allowed.includes(usage)) throw new DOMException(`crypto.subtle: an HMAC key cannot ${usage}`, "SyntaxError");
    if (!out.includes(usage)) ArrayPrototypePush(out, usage);
  }
  return out;
}

function hmacKey(hash, bytes, lengthBits, extractable, usages) {
  if (usages.length === 0) throw new DOMException("crypto.subtle: a secret key needs a usage", "SyntaxError");
  const algorithm = { name: "HMAC", length: lengthBits, hash: { name: hash } };
  return makeKey({
    __proto__: null,
    type: "secret",
    extractable: !!extractable,
    name: "HMAC",
    hash,
    bytes,
    usages,
    algorithmObject: algorithm,
    usagesObject: ArrayPrototypeSlice(usages),
  });
}

const base64url = {
  encode(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    let b = btoa(s);
    while (b.endsWith("=")) b = StringPrototypeSlice(b, 0, b.length - 1);
    return b.replaceAll("+", "-").replaceAll("/", "_");
  },
  decode(text) {
    if (RegExpPrototypeExec(/^[A-Za-z0-9_-]*$/, text) === null) {
      throw new DOMException("crypto.subtle: the JWK's k is not base64url", "DataError");
    }
    const bin = host.atob(text.replaceAll("-", "+").replaceAll("_", "/"));
    if (bin == null) throw new DOMException("crypto.subtle: the JWK's k is not base64url", "DataError");
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = StringPrototypeCharCodeAt(bin, i);
    return out;
  },
};

const JWK_HMAC_ALG = { __proto__: null, "SHA-1": "HS1", "SHA-256": "HS256", "SHA-384": "HS384", "SHA-512": "HS512" };

// The operations' preconditions on a key.
function usableKey(key, name, usage) {
  let s;
  try {
    s = keyRecord(key);
  } catch {
    throw new TypeError("crypto.subtle: the key is not a CryptoKey");
  }
  if (s.name !== name) throw new DOMException(`crypto.subtle: the key is not an ${name} key`, "InvalidAccessError");
  if (!s.usages.includes(usage)) throw new DOMException(`crypto.subtle: the key cannot ${usage}`, "InvalidAccessError");
  return s;
}

class SubtleCrypto {
  constructor(key) {
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
  }
  async digest(algorithm, data) {
    requireArgs(arguments.length, 2, "SubtleCrypto.digest");
    const alg = normalizeAlgorithm(algorithm, "digest");
    const bytes = bufferSourceCopy(data, "data");
    await inParallel();
    return arrayBufferOf(host.digest(alg.name, bytes));
  }
  async importKey(format, keyData, algorithm, extractable, keyUsages_) {
    requireArgs(arguments.length, 5, "SubtleCrypto.importKey");
    format = domString(format);
    if (format !== "raw" && format !== "jwk" && format !== "spki" && format !== "pkcs8") {
      throw new TypeError(`crypto.subtle: ${format} is not a key format`);
    }
    let bytes;
    let jwk;
    if (format === "jwk") {
      if (keyData === null || typeof keyData !== "object" || isBufferSource(keyData)) {
        throw new TypeError("crypto.subtle: a jwk key must be a JsonWebKey object");
      }
      jwk = keyData;
    } else {
      if (!isBufferSource(keyData)) throw new TypeError("crypto.subtle: the key data must be a BufferSource");
      bytes = bufferSourceCopy(keyData, "keyData");
    }
    const alg = normalizeAlgorithm(algorithm, "importKey");
    const usages = keyUsages(keyUsages_, ["sign", "verify"]);
    await inParallel();
    if (format === "jwk") {
      if (jwk.kty !== "oct") throw new DOMException("crypto.subtle: an HMAC JWK has kty oct", "DataError");
      if (jwk.k === undefined) throw new DOMException("crypto.subtle: the JWK has no k", "DataError");
      bytes = base64url.decode(domString(jwk.k));
      if (jwk.alg !== undefined && jwk.alg !== JWK_HMAC_ALG[alg.hash]) {
        throw new DOMException("crypto.subtle: the JWK's alg does not match the hash", "DataError");
      }
      if (usages.length > 0 && jwk.use !== undefined && jwk.use !== "sig") {
        throw new DOMException("crypto.subtle: the JWK's use is not sig", "DataError");
      }
      if (jwk.key_ops !== undefined) {
        const ops = ArrayFrom(jwk.key_ops);
        for (let i = 0; i < usages.length; i++) {
          if (!ops.includes(usages[i])) throw new DOMException("crypto.subtle: key_ops lacks a usage", "DataError");
        }
      }
      if (jwk.ext === false && extractable) {
        throw new DOMException("crypto.subtle: the JWK is not extractable", "DataError");
      }
    } else if (format !== "raw") {
      throw notSupported(`the ${format} format for HMAC`);
    }
    const bits = TypedArrayPrototypeGetLength(bytes) * 8;
    if (bits === 0) throw new DOMException("crypto.subtle: an HMAC key cannot be empty", "DataError");
    let length = bits;
    if (alg.length !== undefined) {
      if (alg.length > bits || alg.length <= bits - 8) {
        throw new DOMException("crypto.subtle: the length does not match the key data", "DataError");
      }
      length = alg.length;
    }
    return hmacKey(alg.hash, bytes, length, extractable, usages);
  }
  async exportKey(format, key) {
    requireArgs(arguments.length, 2, "SubtleCrypto.exportKey");
    format = domString(format);
    if (format !== "raw" && format !== "jwk" && format !== "spki" && format !== "pkcs8") {
      throw new TypeError(`crypto.subtle: ${format} is not a key format`);
    }
    let s;
    try {
      s = keyRecord(key);
    } catch {
      throw new TypeError("crypto.subtle: the key is not a CryptoKey");
    }
    if (!s.extractable) throw new DOMException("crypto.subtle: the key is not extractable", "InvalidAccessError");
    if (format === "raw") return arrayBufferOf(copyBytes(s.bytes));
    if (format === "jwk") {
      return {
        kty: "oct",
        k: base64url.encode(s.bytes),
        alg: JWK_HMAC_ALG[s.hash],
        key_ops: ArrayPrototypeSlice(s.usages),
        ext: s.extractable,
      };
    }
    throw notSupported(`the ${format} format for HMAC`);
  }
  async generateKey(algorithm, extractable, keyUsages_) {
    requireArgs(arguments.length, 3, "SubtleCrypto.generateKey");
    const alg = normalizeAlgorithm(algorithm, "generateKey");
    const usages = keyUsages(keyUsages_, ["sign", "verify"]);
    await inParallel();
    const length = alg.length === undefined ? HASH_BLOCK_BITS[alg.hash] : alg.length;
    if (length === 0) throw new DOMException("crypto.subtle: an HMAC key cannot be empty", "OperationError");
    if (length > 65536 * 8) throw new DOMException("crypto.subtle: the key is too long", "OperationError");
    const bytes = host.randomBytes(MathTrunc((length + 7) / 8));
    if (length % 8 !== 0) bytes[bytes.length - 1] &= (0xff << (8 - (length % 8))) & 0xff;
    return hmacKey(alg.hash, bytes, length, extractable, usages);
  }
  async sign(algorithm, key, data) {
    requireArgs(arguments.length, 3, "SubtleCrypto.sign");
    const alg = normalizeAlgorithm(algorithm, "sign");
    const bytes = bufferSourceCopy(data, "data");
    await inParallel();
    const s = usableKey(key, alg.name, "sign");
    return arrayBufferOf(host.hmacSign(s.hash, s.bytes, bytes));
  }
  async verify(algorithm, key, signature, data) {
    requireArgs(arguments.length, 4, "SubtleCrypto.verify");
    const alg = normalizeAlgorithm(algorithm, "verify");
    const sig = bufferSourceCopy(signature, "signature");
    const bytes = bufferSourceCopy(data, "data");
    await inParallel();
    const s = usableKey(key, alg.name, "verify");
    return host.hmacVerify(s.hash, s.bytes, bytes, sig);
  }
  async encrypt() {
    throw notSupported("encrypt");
  }
  async decrypt() {
    throw notSupported("decrypt");
  }
  async deriveBits() {
    throw notSupported("deriveBits");
  }
  async deriveKey() {
    throw notSupported("deriveKey");
  }
  async wrapKey() {
    throw notSupported("wrapKey");
  }
  async unwrapKey() {
    throw notSupported("unwrapKey");
  }
  get [Symbol.toStringTag]() {
    return "SubtleCrypto";
  }
}

// crypto.subtle (a lazy property of the core's crypto).
const subtleCrypto = new SubtleCrypto(INTERNAL);

// @part compression
// ------------------------------------------- Compression/DecompressionStream --
// The Compression Streams standard's two TransformStreams over native
// coders (js/compress.rs: flate2). A runtime has at most 32 coders open
// (a RangeError past that); a coder is freed when its stream ends, errors
// or is cancelled, or when the stream is collected. One chunk's output
// comes back in pieces allocated in the tenant's heap, and stops with a
// RangeError past half the tenant's memory (a decompression bomb).

// A stream whose coder is still open when it is collected frees it here.
const coderStreams = new FinalizationRegistry((handle) => host.coderClose(handle));

function coderTransform(format, compress, what) {
  format = domString(format);
  if (format !== "gzip" && format !== "deflate" && format !== "deflate-raw") {
    throw new TypeError(`${what}: unsupported format ${format}`);
  }
  // `coder` is what the transform's algorithms hold: while any of them can
  // still run, it is reachable and its host coder stays open.
  const coder = { __proto__: null, handle: host.coderOpen(format, compress) };
  FinalizationRegistryPrototypeRegister(coderStreams, coder, coder.handle, coder);
  const close = () => {
    if (coder.handle < 0) return;
    FinalizationRegistryPrototypeUnregister(coderStreams, coder);
    host.coderClose(coder.handle);
    coder.handle = -1;
  };
  const enqueueAll = (pieces, c) => {
    for (let i = 0; i < pieces.length; i++) c.enqueue(pieces[i]);
  };
  const ended = () => new TypeError(`${what}: the stream has ended`);
  return new TransformStream({
    transform(chunk, c) {
      if (!isBufferSource(chunk)) {
        close();
        throw new TypeError(`${what}: chunks must be ArrayBuffers or ArrayBuffer views`);
      }
      if (coder.handle < 0) throw ended();
      const bytes = bytesView(chunk);
      if (TypedArrayPrototypeGetLength(bytes) === 0) return;
      let pieces;
      try {
        pieces = host.coderWrite(coder.handle, bytes);
      } catch (e) {
        // The host has closed a coder that failed.
        FinalizationRegistryPrototypeUnregister(coderStreams, coder);
        coder.handle = -1;
        throw e;
      }
      enqueueAll(pieces, c);
    },
    flush(c) {
      if (coder.handle < 0) throw ended();
      const handle = coder.handle;
      FinalizationRegistryPrototypeUnregister(coderStreams, coder);
      coder.handle = -1;
      // The host closes the coder whatever the result.
      enqueueAll(host.coderFinish(handle), c);
    },
    cancel() {
      close();
    },
  });
}

class CompressionStream {
  #ts;
  constructor(format) {
    requireArgs(arguments.length, 1, "CompressionStream");
    this.#ts = coderTransform(format, true, "CompressionStream");
  }
  get readable() {
    return this.#ts.readable;
  }
  get writable() {
    return this.#ts.writable;
  }
  get [Symbol.toStringTag]() {
    return "CompressionStream";
  }
}

class DecompressionStream {
  #ts;
  constructor(format) {
    requireArgs(arguments.length, 1, "DecompressionStream");
    this.#ts = coderTransform(format, false, "DecompressionStream");
  }
  get readable() {
    return this.#ts.readable;
  }
  get writable() {
    return this.#ts.writable;
  }
  get [Symbol.toStringTag]() {
    return "DecompressionStream";
  }
}

// @part formdata
// --------------------------------------------------------------- FormData --
// XHR's FormData (an ordered list of entries, each a name and a string or a
// File), multipart/form-data serialization for bodies, and the parsing
// behind Request/Response.formData(): multipart bodies by the host
// (js/multipart.rs: at most 10,000 parts), urlencoded ones by
// form_urlencoded, as URLSearchParams.

// Most entries formData() builds from one body.
const MAX_FORM_ENTRIES = 10000;

let formDataList; // FormData -> its entry list (throws on anything else)
let isFormData;

// The standard's "create an entry" value: a string, or a File (a Blob
// becomes one named "blob", a File given a filename becomes a copy so named).
function formEntryValue(value, filename, hasFilename, what) {
  if (!isBlob(value)) {
    if (hasFilename) throw new TypeError(`${what}: a filename needs a Blob value`);
    return usvString(value);
  }
  const file = isFile(value);
  if (file && !hasFilename) return value;
  const name = hasFilename ? usvString(filename) : file ? value.name : "blob";
  const options = { type: value.type };
  if (file) options.lastModified = value.lastModified;
  return new File([value], name, options);
}

const FormDataIteratorPrototype = Object.create(IteratorPrototype, {
  next: {
    __proto__: null,
    value: function next() {
      const it = WeakMapPrototypeGet(formDataIterators, this);
      if (it === undefined) throw new TypeError("next called on an object that is not a FormData Iterator");
      const list = formDataList(it.form);
      if (it.index >= list.length) return { value: undefined, done: true };
      const entry = list[it.index++];
      const value = it.kind === "key" ? entry[0] : it.kind === "value" ? entry[1] : [entry[0], entry[1]];
      return { value, done: false };
    },
    writable: true,
    enumerable: true,
    configurable: true,
  },
  [Symbol.toStringTag]: { __proto__: null, value: "FormData Iterator", configurable: true },
});
const formDataIterators = new WeakMap();

function formDataIterator(form, kind) {
  formDataList(form);
  const it = Object.create(FormDataIteratorPrototype);
  WeakMapPrototypeSet(formDataIterators, it, { __proto__: null, form, kind, index: 0 });
  return it;
}

class FormData {
  #list = [];
  static {
    formDataList = (f) => f.#list;
    isFormData = (x) => {
      try {
        x.#list;
        return true;
      } catch {
        return false;
      }
    };
  }
  constructor(form = undefined, submitter = undefined) {
    if (form !== undefined) throw new TypeError("FormData: a tenant has no HTML form element to read");
  }
  append(name, value, filename = undefined) {
    requireArgs(arguments.length, 2, "FormData.append");
    ArrayPrototypePush(this.#list, [usvString(name), formEntryValue(value, filename, arguments.length > 2, "FormData.append")]);
  }
  delete(name) {
    requireArgs(arguments.length, 1, "FormData.delete");
    name = usvString(name);
    const list = this.#list;
    for (let i = list.length - 1; i >= 0; i--) if (list[i][0] === name) ArrayPrototypeSplice(list, i, 1);
  }
  get(name) {
    requireArgs(arguments.length, 1, "FormData.get");
    name = usvString(name);
    const list = this.#list;
    for (let i = 0; i < list.length; i++) if (list[i][0] === name) return list[i][1];
    return null;
  }
  getAll(name) {
    requireArgs(arguments.length, 1, "FormData.getAll");
    name = usvString(name);
    const list = this.#list;
    const out = [];
    for (let i = 0; i < list.length; i++) if (list[i][0] === name) ArrayPrototypePush(out, list[i][1]);
    return out;
  }
  has(name) {
    requireArgs(arguments.length, 1, "FormData.has");
    name = usvString(name);
    const list = this.#list;
    for (let i = 0; i < list.length; i++) if (list[i][0] === name) return true;
    return false;
  }
  set(name, value, filename = undefined) {
    requireArgs(arguments.length, 2, "FormData.set");
    name = usvString(name);
    const entry = [name, formEntryValue(value, filename, arguments.length > 2, "FormData.set")];
    const list = this.#list;
    let first = -1;
    for (let i = 0; i < list.length; i++) {
      if (list[i][0] !== name) continue;
      if (first < 0) {
        first = i;
        list[i] = entry;
      } else {
        ArrayPrototypeSplice(list, i--, 1);
      }
    }
    if (first < 0) ArrayPrototypePush(list, entry);
  }
  forEach(callback, thisArg = undefined) {
    if (typeof callback !== "function") throw new TypeError("FormData.forEach: the callback is not a function");
    const list = this.#list;
    for (let i = 0; i < list.length; i++) ReflectApply(callback, thisArg, [list[i][1], list[i][0], this]);
  }
  entries() {
    return formDataIterator(this, "key+value");
  }
  keys() {
    return formDataIterator(this, "key");
  }
  values() {
    return formDataIterator(this, "value");
  }
  get [Symbol.toStringTag]() {
    return "FormData";
  }
}
ObjectDefineProperty(FormData.prototype, Symbol.iterator, {
  __proto__: null,
  value: FormData.prototype.entries,
  writable: true,
  configurable: true,
});

// Every lone CR and lone LF as CRLF (the multipart encoding's first step).
function crlfNormalize(s) {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = StringPrototypeCharCodeAt(s, i);
    if (c === 0x0d) {
      out += "\r\n";
      if (StringPrototypeCharCodeAt(s, i + 1) === 0x0a) i++;
    } else if (c === 0x0a) {
      out += "\r\n";
    } else {
      out += s[i];
    }
  }
  return out;
}

// A name or filename in Content-Disposition: LF, CR and '"' escaped.
function dispositionEscape(s) {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    out += c === "\n" ? "%0A" : c === "\r" ? "%0D" : c === '"' ? "%22" : c;
  }
  return out;
}

function concatBytes(chunks) {
  let total = 0;
  for (let i = 0; i < chunks.length; i++) total += TypedArrayPrototypeGetLength(chunks[i]);
  const out = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < chunks.length; i++) {
    TypedArrayPrototypeSet(out, chunks[i], at);
    at += TypedArrayPrototypeGetLength(chunks[i]);
  }
  return out;
}

// A FormData as a multipart/form-data body: [bytes, its content type].
function formDataBody(form) {
  const random = host.randomBytes(16);
  let boundary = "----CorralFormBoundary";
  for (let i = 0; i < random.length; i++) boundary += "0123456789abcdef"[random[i] & 15];
  const list = formDataList(form);
  const chunks = [];
  for (let i = 0; i < list.length; i++) {
    const name = list[i][0];
    const value = list[i][1];
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${dispositionEscape(crlfNormalize(name))}"`;
    if (typeof value === "string") {
      ArrayPrototypePush(chunks, utf8Encode(`${head}\r\n\r\n`), utf8Encode(crlfNormalize(value)));
    } else {
      const type = value.type;
      head += `; filename="${dispositionEscape(value.name)}"\r\nContent-Type: ${type === "" ? "application/octet-stream" : type}\r\n\r\n`;
      ArrayPrototypePush(chunks, utf8Encode(head), blobBytes(value));
    }
    ArrayPrototypePush(chunks, utf8Encode("\r\n"));
  }
  ArrayPrototypePush(chunks, utf8Encode(`--${boundary}--\r\n`));
  return [concatBytes(chunks), `multipart/form-data; boundary=${boundary}`];
}

// Request/Response.formData(): the body's bytes as a FormData, by its
// content type.
function parseFormBody(bytes, contentType) {
  const type = contentType === null ? "" : contentType;
  const semi = StringPrototypeIndexOf(type, ";");
  const essence = StringPrototypeToLowerCase(StringPrototypeSlice(type, 0, semi < 0 ? type.length : semi).trim());
  const form = new FormData();
  const list = formDataList(form);
  if (essence === "multipart/form-data") {
    const parts = host.multipartParse(bytes, type);
    for (let i = 0; i < parts.length; i += 5) {
      const content = TypedArrayPrototypeSubarray(bytes, parts[i + 3], parts[i + 4]);
      const filename = parts[i + 1];
      const value =
        filename === undefined
          ? utf8Decode(content, false)
          : new File([content], filename, {
              // No Content-Type: text/plain; one that is not a MIME type: "".
              type: parts[i + 2] === undefined ? "text/plain" : parts[i + 2],
              lastModified: 0,
            });
      ArrayPrototypePush(list, [parts[i], value]);
    }
    return form;
  }
  if (essence === "application/x-www-form-urlencoded") {
    const pairs = host.formParse(utf8Decode(bytes, false));
    if (pairs.length > 2 * MAX_FORM_ENTRIES) {
      throw new TypeError(`formData(): the body has more than ${MAX_FORM_ENTRIES} entries`);
    }
    for (let i = 0; i + 1 < pairs.length; i += 2) ArrayPrototypePush(list, [pairs[i], pairs[i + 1]]);
    return form;
  }
  throw new TypeError("formData(): the body is neither multipart/form-data nor application/x-www-form-urlencoded");
}

// @part core
define("TextEncoder", TextEncoder);
define("CryptoKey", CryptoKey);
define("SubtleCrypto", SubtleCrypto);
define("CompressionStream", CompressionStream);
define("DecompressionStream", DecompressionStream);
define("FormData", FormData);
define("structuredClone", structuredClone);
define("Blob", Blob);
define("File", File);
// What the tenant runs on, for code that asks (as Workers answer
// "Cloudflare-Workers").
define("navigator", ObjectFreeze({ __proto__: null, userAgent: "Corral" }));
define("DOMException", DOMException);
define("Event", Event);
define("CustomEvent", CustomEvent);
define("ErrorEvent", ErrorEvent);
define("EventTarget", EventTarget);
// The global object's own EventTarget methods (see EventTarget).
define("addEventListener", addEventListener);
define("removeEventListener", removeEventListener);
define("dispatchEvent", dispatchEvent);
define("AbortSignal", AbortSignal);
define("AbortController", AbortController);
define("self", globalThis);
define("TextDecoder", TextDecoder);
define("atob", atob);
define("btoa", btoa);
define("URLSearchParams", URLSearchParams);
define("URL", URL);
define("Headers", Headers);
define("Request", Request);
define("Response", Response);
define("ReadableStream", ReadableStream);
define("ReadableStreamDefaultReader", ReadableStreamDefaultReader);
define("ReadableStreamDefaultController", ReadableStreamDefaultController);
define("WritableStream", WritableStream);
define("WritableStreamDefaultWriter", WritableStreamDefaultWriter);
define("WritableStreamDefaultController", WritableStreamDefaultController);
define("TransformStream", TransformStream);
define("TransformStreamDefaultController", TransformStreamDefaultController);
define("CountQueuingStrategy", CountQueuingStrategy);
define("ByteLengthQueuingStrategy", ByteLengthQueuingStrategy);
define("TextEncoderStream", TextEncoderStream);
define("TextDecoderStream", TextDecoderStream);

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
  if (isUint8Array(value)) return value;
  if (isBufferSource(value)) return copyBytes(value);
  if (typeof value === "string") return utf8Encode(value);
  throw new TypeError(
    `a streamed response body must yield Uint8Array (or string) chunks, got ${inspect(value)}`,
  );
}

// Settles once every promise in `promises` (as it is now) has fulfilled;
// they never reject. Promise.all without the iterator or `then` lookups.
function allFulfilled(promises) {
  const d = deferred();
  let left = promises.length;
  if (left === 0) d.resolve();
  for (let i = 0; i < promises.length; i++) {
    PromisePrototypeThen(promises[i], () => {
      if (--left === 0) d.resolve();
    });
  }
  return d.promise;
}

// What internals.run resolves to: a real array for the host, without a
// prototype, so settling the promise with it looks up no `then`.
function headRecord(status, pairs, body, streamed) {
  const head = [status, pairs, body, streamed];
  ObjectSetPrototypeOf(head, null);
  return head;
}

const logError = logger("error: ");

// Open response streams: scope -> { r, read }, where `r` is the internal
// record of the stream's reader and `read` the state of the read under
// way: null (none), or { pending, done, chunk, failed, error }.
const streams = new Map();
// The scopes whose read settled since the host last asked.
let readyScopes = [];

// The `ctx` a fetch handler gets. Its methods are on the prototype (no
// closures per request); its waits are behind a private field, which only
// the prelude reads, so a tenant that patches the prototype changes only
// what its own handler calls.
const CTX_KEY = { __proto__: null };
let ctxWaits; // (ctx) -> its waitUntil promises, or null when none

class ExecutionContext {
  #waits = null;
  constructor(key) {
    if (key !== CTX_KEY) throw new TypeError("Illegal constructor");
  }
  static {
    ctxWaits = (ctx) => ctx.#waits;
  }
  waitUntil(p) {
    const settled = PromisePrototypeCatch(PromiseResolve(p), logError);
    if (this.#waits === null) this.#waits = [settled];
    else ArrayPrototypePush(this.#waits, settled);
  }
  passThroughOnException() {}
}

// The rest of `internals.run` for a handler's `result` that is not a
// Response with its head known at once: a promise, a streamed body, waits,
// or not a Response at all. Returns the head, or a promise of it.
function finish(scope, result, ctx) {
  // The head, when it is known before `run` returns: no promise.
  let early = null;
  let thrown = false;
  let error;
  let done = null;
  const resolve = (record) => {
    if (done === null) early = record;
    else done.resolve(record);
  };
  const reject = (e) => {
    if (done !== null) return done.reject(e);
    thrown = true;
    error = e;
  };
  const respond = (response) => {
    try {
      const status = responseStatus(response);
      if (status < 0) {
        throw badResponse(`fetch() must return a Response, got ${inspect(response)}`);
      }
      if (status === 0) throw badResponse("fetch() returned Response.error(), a network error");
      const pairs = responseWirePairs(response);
      const stream = bodyStreamOf(response);
      if (stream !== null) {
        MapPrototypeSet(streams, scope, { __proto__: null, r: rsAcquireReader(rsOf(stream)), read: null });
        return resolve(headRecord(status, pairs, null, true));
      }
      const text = bodyPeekText(response);
      const record = headRecord(status, pairs, text !== null ? text : bodyPeekBytes(response), false);
      const waits = ctxWaits(ctx);
      if (waits === null) resolve(record);
      else PromisePrototypeThen(allFulfilled(waits), () => resolve(record));
    } catch (e) {
      reject(e);
    }
  };
  // The handler's result is never used to resolve a promise: that would
  // look up `then` on it (a Response, or the handler's promise) and run
  // whatever a tenant put there.
  try {
    if (responseStatus(result) >= 0) respond(result);
    else if (!thenIfPromise(result, respond, reject)) {
      // A thenable of the tenant's, or not a Response at all.
      PromisePrototypeThen(PromiseResolve(result), respond, reject);
    }
  } catch (e) {
    reject(e);
  }
  if (early !== null) return early;
  if (thrown) throw error;
  done = deferred();
  return done.promise;
}

const internals = {
  // Validates the tenant module's namespace and keeps its fetch handler.
  setModule(ns) {
    const def = ns.default;
    if (def === null || (typeof def !== "object" && typeof def !== "function") || typeof def.fetch !== "function") {
      throw badResponse("app.js must `export default { fetch(request, env, ctx) { ... } }`");
    }
    handler = def;
  },

  // Runs the handler for one request in `scope`. Returns (or, when the
  // handler is asynchronous, resolves to) [status, [name, value, ...], body
  // Uint8Array or null, streamed]; a handler that throws at once throws
  // here. When `streamed` is true the body is a stream, read chunk by chunk
  // with `pullStart`/`pullResult` until it ends or the host calls
  // `endScope`; `ctx.waitUntil` promises then run alongside it instead of
  // delaying the head. `flags`: 1, the tenant has KV; 2, `url` is already
  // parsed and serialized (else the Request constructor parses it, and
  // throws as it would for the guest).
  run(scope, method, url, headerPairs, body, flags) {
    currentScope = scope;
    clearScopeTimers(scope);
    const hasKv = (flags & 1) !== 0;
    if (body != null && (method === "GET" || method === "HEAD")) body = null;
    let request;
    if ((flags & 2) !== 0 && (method === "GET" || method === "POST" || method === "HEAD" || method === "PUT" ||
        method === "DELETE" || method === "OPTIONS" || method === "PATCH")) {
      fromHostMethod = method;
      fromHostHref = url;
      fromHostPairs = headerPairs;
      fromHostBody = body == null ? null : body;
      request = new Request(FROM_HOST);
    } else {
      const headers = new Headers();
      for (let i = 0; i < headerPairs.length; i += 2) headersAppend(headers, headerPairs[i], headerPairs[i + 1]);
      const init = { __proto__: null, method, headers, body: body == null ? undefined : body };
      request = new Request(url, init);
    }
    const env = {};
    if (hasKv) env.KV = KV;
    const ctx = new ExecutionContext(CTX_KEY);
    // A handler that returns a Response at once, with nothing passed to
    // waitUntil and a body that is not streamed: its head, with no closures.
    const result = handler.fetch(request, env, ctx);
    const status = responseStatus(result);
    if (status > 0 && ctxWaits(ctx) === null) {
      const text = bodyPeekText(result);
      if (text !== null) return headRecord(status, responseWirePairs(result), text, false);
      if (bodyStreamOf(result) === null) {
        return headRecord(status, responseWirePairs(result), bodyPeekBytes(result), false);
      }
    }
    return finish(scope, result, ctx);
  },

  // Starts reading the next chunk of `scope`'s stream, unless a read is
  // already under way or settled. When the read settles (at once, if the
  // stream has a chunk queued), `scope` is listed for `takeReady`.
  pullStart(scope) {
    currentScope = scope;
    const s = MapPrototypeGet(streams, scope);
    if (s === undefined || s.read !== null) return;
    const read = { __proto__: null, pending: true, done: false, chunk: undefined, failed: false, error: undefined };
    s.read = read;
    const settled = () => {
      read.pending = false;
      if (MapPrototypeHas(streams, scope)) ArrayPrototypePush(readyScopes, scope);
    };
    rsReadInto(s.r.stream, {
      __proto__: null,
      chunk(value) {
        try {
          read.chunk = chunkBytes(value);
        } catch (e) {
          read.failed = true;
          read.error = e;
        }
        settled();
      },
      close() {
        read.done = true;
        settled();
      },
      error(e) {
        read.failed = true;
        read.error = e === undefined ? new TypeError("the response stream was errored") : e;
        settled();
      },
    });
  },

  // The scopes whose read settled since the last call, so the host wakes
  // only the streams that have something to hand over.
  takeReady() {
    const ready = readyScopes;
    readyScopes = [];
    return ready;
  },

  // The settled read of `scope`'s stream: undefined while it is pending,
  // null when the stream has ended, else the chunk's bytes. A stream the
  // guest errored throws its error.
  pullResult(scope) {
    const s = MapPrototypeGet(streams, scope);
    if (s === undefined) return null;
    const read = s.read;
    if (read === null || read.pending) return undefined;
    s.read = null;
    if (read.failed) throw read.error;
    return read.done ? null : read.chunk;
  },

  // Milliseconds until `scope`'s earliest timer is due, or -1 when it has none.
  nextTimer(scope) {
    const next = earliestTimer(scope);
    return next === undefined ? -1 : MathMax(0, next.t.due - DateNow());
  },

  // Fires `scope`'s earliest timer.
  fireTimer(scope) {
    currentScope = scope;
    const next = earliestTimer(scope);
    if (next === undefined) return;
    const timer = next.t;
    if (timer.repeat) {
      timer.due = DateNow() + MathMax(1, timer.delay) + 1;
      timer.seq = ++timerSeq;
    } else {
      MapPrototypeDelete(timers, next.id);
    }
    ReflectApply(timer.fn, undefined, timer.args);
  },

  // Ends `scope`: drops its timers (none outlives its request) and, if its
  // stream is still open (the client went away, or a limit ended it),
  // cancels the stream so the guest's `cancel` callback runs.
  endScope(scope) {
    clearScopeTimers(scope);
    const s = MapPrototypeGet(streams, scope);
    MapPrototypeDelete(streams, scope);
    if (s !== undefined) {
      currentScope = scope;
      try {
        if (s.r.stream !== null) PromisePrototypeCatch(rsCancel(s.r.stream, "the response stream was closed"), noop);
      } catch (_) {
        // A broken stream must not stop the host.
      }
      clearScopeTimers(scope);
    }
  },
};

export default internals;

// @part wasm
// ------------------------------------------------------------ WebAssembly --
// The WebAssembly JS API over wasmtime (js/wasm.rs: modules of at most
// 4 MiB, wasm stopped by the request's budget, linear memories, tables and
// code charged to the tenant's memory). Wasm objects live in stores: an
// instance whose imports are only JS functions and values gets a store of
// its own, which goes (with its memory) once nothing of it is reachable;
// memories, globals and tables made by `new` share the runtime's first
// store, as do instances that import them. The natives know objects by
// (store, index); this part wraps them in the spec's objects. Modules
// cannot use the threads proposal; a JS-made shared Memory's buffer is a
// real SharedArrayBuffer. An engine with a WebAssembly of its own (V8,
// whose host has no wasm natives) keeps its own.

const wasmNative = host.wasmNatives === undefined ? undefined : host.wasmNatives();
let wasmSharedStore; // the store of JS-made objects, made on first use
const wasmWrap = Symbol("wrap"); // constructs a wrapper of an existing object
const wasmFuncs = new WeakMap(); // store -> Map(function index -> its JS function)
const wasmFuncOf = new WeakMap(); // exported JS function -> [store, index]
const wasmMemories = new WeakMap(); // store -> Map(memory index -> its Memory)

function wasmJsStore() {
  if (wasmSharedStore === undefined) wasmSharedStore = wasmNative.newStore();
  return wasmSharedStore;
}

function wasmErrorClass(name) {
  const C = class extends Error {
    constructor(message, options) {
      super(message, options);
    }
  };
  ObjectDefineProperty(C, "name", { __proto__: null, value: name, configurable: true });
  ObjectDefineProperty(C.prototype, "name", { __proto__: null, value: name, writable: true, configurable: true });
  return C;
}
const WasmCompileError = wasmErrorClass("CompileError");
const WasmLinkError = wasmErrorClass("LinkError");
const WasmRuntimeError = wasmErrorClass("RuntimeError");

function wasmMakeError(kind, message) {
  switch (kind) {
    case "CompileError":
      return new WasmCompileError(message);
    case "LinkError":
      return new WasmLinkError(message);
    case "RuntimeError":
      return new WasmRuntimeError(message);
    case "RangeError":
      return new RangeError(message);
    default:
      return new TypeError(message);
  }
}

// The bytes of a BufferSource, copied (the tenant cannot change them while
// they compile).
function wasmBytes(source, what) {
  if (!isBufferSource(source) || isSharedArrayBuffer(source)) {
    throw new TypeError(`${what}: the argument must be an ArrayBuffer or an ArrayBuffer view`);
  }
  return copyBytes(source);
}

const NumberIsFinite = Number.isFinite;

// WebIDL's [EnforceRange] unsigned long.
function wasmIndex(v, what) {
  const n = +v; // ToNumber (a BigInt or a Symbol throws)
  if (!NumberIsFinite(n)) throw new TypeError(`${what} must be a finite number`);
  const i = MathTrunc(n);
  if (i < 0 || i > 0xffffffff) throw new TypeError(`${what} is out of range`);
  return i + 0; // no -0
}

function wasmDescriptor(d, what) {
  if (d === null || (typeof d !== "object" && typeof d !== "function")) {
    throw new TypeError(`${what}: the descriptor must be an object`);
  }
  return d;
}

function wasmIsObject(v) {
  return v !== null && (typeof v === "object" || typeof v === "function");
}

// The cache of `store` in `map` (a WeakMap of Maps).
function wasmCache(map, store) {
  let m = WeakMapPrototypeGet(map, store);
  if (m === undefined) {
    m = new Map();
    WeakMapPrototypeSet(map, store, m);
  }
  return m;
}

// The JS function for the wasm function `index` of `store` (one per
// function), named by its index in its module where known (an export).
function wasmFunction(store, index, funcIndex) {
  const cache = wasmCache(wasmFuncs, store);
  let f = MapPrototypeGet(cache, index);
  if (f !== undefined) return f;
  const call = wasmNative.call;
  f = (...args) => call(store, index, args, wasmMakeError);
  const name = `${funcIndex === undefined ? index : funcIndex}`;
  ObjectDefineProperty(f, "name", { __proto__: null, value: name, configurable: true });
  ObjectDefineProperty(f, "length", {
    __proto__: null,
    value: wasmNative.funcArity(store, index),
    configurable: true,
  });
  MapPrototypeSet(cache, index, f);
  WeakMapPrototypeSet(wasmFuncOf, f, [store, index]);
  return f;
}

// A funcref value from JS for an object of `store`: null (-1), or a
// function exported by wasm from that store.
function wasmFuncRef(v, store, what) {
  if (v === null) return -1;
  const found = typeof v === "function" ? WeakMapPrototypeGet(wasmFuncOf, v) : undefined;
  if (found === undefined) throw new TypeError(`${what}: not a WebAssembly function or null`);
  if (found[0] !== store) {
    throw new TypeError(`${what}: a function of another instance's store cannot be stored here in Corral`);
  }
  return found[1];
}

function wasmRefType(t, what) {
  t = `${t}`;
  if (t === "anyfunc" || t === "funcref") return "anyfunc";
  throw new TypeError(`${what}: element type ${t} is not supported`);
}

class WasmModule {
  #op;
  constructor(bytes) {
    requireArgs(arguments.length, 1, "WebAssembly.Module");
    this.#op = wasmNative.compile(wasmBytes(bytes, "WebAssembly.Module"), wasmMakeError);
  }
  static #of(m, what) {
    if (m === null || typeof m !== "object" || !(#op in m)) throw new TypeError(`${what}: not a WebAssembly.Module`);
    return m.#op;
  }
  static op(m) {
    return WasmModule.#of(m, "WebAssembly.Instance");
  }
  static exports(m) {
    const rows = WasmModule.#of(m, "WebAssembly.Module.exports")("exports");
    const out = [];
    for (let i = 0; i < rows.length; i++) ArrayPrototypePush(out, { name: rows[i][0], kind: rows[i][1] });
    return out;
  }
  static imports(m) {
    const rows = WasmModule.#of(m, "WebAssembly.Module.imports")("imports");
    const out = [];
    for (let i = 0; i < rows.length; i++) {
      ArrayPrototypePush(out, { module: rows[i][0], name: rows[i][1], kind: rows[i][2] });
    }
    return out;
  }
  static customSections(m, name) {
    const op = WasmModule.#of(m, "WebAssembly.Module.customSections");
    requireArgs(arguments.length, 2, "WebAssembly.Module.customSections");
    const found = op("custom", `${name}`);
    const out = [];
    for (let i = 0; i < found.length; i++) ArrayPrototypePush(out, TypedArrayPrototypeGetBuffer(found[i]));
    return out;
  }
}
const wasmModuleOp = WasmModule.op;
delete WasmModule.op;

// Instantiates the module `op` with `importObject`: its frozen exports.
function wasmInstantiate(op, importObject) {
  const imports = op("imports");
  if (importObject !== undefined && !wasmIsObject(importObject)) {
    throw new TypeError("WebAssembly.Instance: the import object must be an object");
  }
  if (imports.length > 0 && importObject === undefined) {
    throw new TypeError("WebAssembly.Instance: the module has imports but no import object was given");
  }
  // Each import as [kind, value, its store and index if it is a wasm object].
  const resolved = [];
  let store;
  for (let i = 0; i < imports.length; i++) {
    const row = imports[i];
    const module = row[0];
    const name = row[1];
    const kind = row[2];
    const type = row[3];
    const mutable = row[4];
    const o = importObject[module];
    if (!wasmIsObject(o)) throw new TypeError(`WebAssembly.Instance: import module ${module} is not an object`);
    const v = o[name];
    const what = `WebAssembly.Instance: import ${module}.${name}`;
    let at;
    if (kind === "function") {
      if (typeof v !== "function") throw new WasmLinkError(`${what} must be a function`);
      at = WeakMapPrototypeGet(wasmFuncOf, v);
    } else if (kind === "global") {
      at = wasmGlobalAt(v);
      if (at === undefined) {
        if (type === "i64" ? typeof v !== "bigint" : typeof v !== "number") {
          throw new WasmLinkError(`${what} must be a WebAssembly.Global or a ${type === "i64" ? "BigInt" : "Number"}`);
        }
        if (mutable) throw new WasmLinkError(`${what} must be a WebAssembly.Global (it is mutable)`);
      }
    } else if (kind === "memory") {
      at = wasmMemoryAt(v);
      if (at === undefined) throw new WasmLinkError(`${what} must be a WebAssembly.Memory`);
    } else if (kind === "table") {
      at = wasmTableAt(v);
      if (at === undefined) throw new WasmLinkError(`${what} must be a WebAssembly.Table`);
    } else {
      throw new WasmLinkError(`${what}: ${kind} imports are not supported`);
    }
    if (at !== undefined) {
      if (store === undefined) store = at[0];
      else if (store !== at[0]) {
        throw new WasmLinkError(`${what}: imports from different instances' stores cannot be linked in Corral`);
      }
    }
    ArrayPrototypePush(resolved, [kind, v, at, type]);
  }
  // Only JS functions and values: a store of its own.
  if (store === undefined) store = wasmNative.newStore();
  const entries = [];
  const fns = [];
  for (let i = 0; i < resolved.length; i++) {
    const r = resolved[i];
    let entry;
    if (r[2] !== undefined) entry = r[2][1];
    else if (r[0] === "function") entry = -ArrayPrototypePush(fns, r[1]);
    else entry = wasmNative.globalNew(store, r[3], false, r[1], -1);
    ArrayPrototypePush(entries, entry);
  }
  const rows = op("instantiate", store, entries, fns, wasmMakeError);
  const exports = { __proto__: null };
  for (let i = 0; i < rows.length; i++) {
    const name = rows[i][0];
    const kind = rows[i][1];
    const index = rows[i][2];
    let v;
    if (kind === "function") v = wasmFunction(store, index, rows[i][3]);
    else if (kind === "memory") v = wasmMemoryWrap(store, index);
    else if (kind === "global") v = new WasmGlobal(wasmWrap, store, index);
    else if (kind === "table") v = new WasmTable(wasmWrap, store, index);
    else continue;
    exports[name] = v;
  }
  return ObjectFreeze(exports);
}

class WasmInstance {
  #exports;
  constructor(module, importObject) {
    requireArgs(arguments.length, 1, "WebAssembly.Instance");
    this.#exports = wasmInstantiate(wasmModuleOp(module), importObject);
  }
  get exports() {
    return this.#exports;
  }
}

class WasmMemory {
  #store;
  #index;
  #shared;
  constructor(descriptor) {
    if (descriptor === wasmWrap) {
      this.#store = arguments[1];
      this.#index = arguments[2];
      this.#shared = wasmNative.memShared(this.#store, this.#index);
      return;
    }
    requireArgs(arguments.length, 1, "WebAssembly.Memory");
    const d = wasmDescriptor(descriptor, "WebAssembly.Memory");
    const initial = wasmIndex(d.initial, "WebAssembly.Memory: initial");
    const max = d.maximum;
    const maximum = max === undefined ? undefined : wasmIndex(max, "WebAssembly.Memory: maximum");
    const shared = !!d.shared;
    if (initial > 65536) throw new RangeError("WebAssembly.Memory: initial is above 65536 pages");
    if (maximum !== undefined && (maximum > 65536 || maximum < initial)) {
      throw new RangeError("WebAssembly.Memory: maximum is below initial or above 65536 pages");
    }
    if (shared && maximum === undefined) throw new TypeError("WebAssembly.Memory: a shared memory needs a maximum");
    const store = wasmJsStore();
    this.#index = wasmNative.memNew(store, initial, maximum === undefined ? -1 : maximum, shared, wasmMakeError);
    this.#store = store;
    this.#shared = shared;
    MapPrototypeSet(wasmCache(wasmMemories, store), this.#index, this);
  }
  static at(m) {
    return wasmIsObject(m) && #index in m ? [m.#store, m.#index] : undefined;
  }
  static wrap(store, index) {
    const cache = wasmCache(wasmMemories, store);
    let m = MapPrototypeGet(cache, index);
    if (m === undefined) {
      m = new WasmMemory(wasmWrap, store, index);
      MapPrototypeSet(cache, index, m);
    }
    return m;
  }
  // The host keeps each memory's current buffer, and detaches it when the
  // memory grows (from JS, or from wasm by the time wasm returns or calls JS).
  get buffer() {
    const b = wasmNative.memBuffer(this.#store, this.#index);
    return this.#shared ? ObjectFreeze(b) : b;
  }
  grow(delta) {
    const store = this.#store;
    requireArgs(arguments.length, 1, "WebAssembly.Memory.grow");
    const n = wasmIndex(delta, "WebAssembly.Memory.grow: delta");
    return wasmNative.memGrow(store, this.#index, n, wasmMakeError);
  }
}
const wasmMemoryWrap = WasmMemory.wrap;

const wasmValueTypes = ["i32", "i64", "f32", "f64", "anyfunc", "funcref"];
const ArrayPrototypeIncludes = uncurryThis(Array.prototype.includes);

class WasmGlobal {
  #store;
  #index;
  #type;
  #mutable;
  constructor(descriptor, v) {
    if (descriptor === wasmWrap) {
      this.#store = v;
      this.#index = arguments[2];
      const t = wasmNative.globalType(this.#store, this.#index);
      this.#type = t[0];
      this.#mutable = t[1];
      return;
    }
    requireArgs(arguments.length, 1, "WebAssembly.Global");
    const d = wasmDescriptor(descriptor, "WebAssembly.Global");
    const mutable = !!d.mutable;
    let type = `${d.value}`;
    if (!ArrayPrototypeIncludes(wasmValueTypes, type)) {
      throw new TypeError(`WebAssembly.Global: value type ${type} is not supported`);
    }
    if (type === "funcref") type = "anyfunc";
    const isRef = type === "anyfunc";
    const store = wasmJsStore();
    const func = isRef ? (v === undefined ? -1 : wasmFuncRef(v, store, "WebAssembly.Global")) : -1;
    this.#index = wasmNative.globalNew(store, type, mutable, isRef ? undefined : v, func);
    this.#store = store;
    this.#type = type;
    this.#mutable = mutable;
  }
  static at(g) {
    return wasmIsObject(g) && #index in g ? [g.#store, g.#index] : undefined;
  }
  get value() {
    const v = wasmNative.globalGet(this.#store, this.#index);
    if (this.#type === "anyfunc") return v < 0 ? null : wasmFunction(this.#store, v);
    return v;
  }
  set value(v) {
    if (!this.#mutable) throw new TypeError("WebAssembly.Global: the global is immutable");
    requireArgs(arguments.length, 1, "WebAssembly.Global.value");
    const func = this.#type === "anyfunc" ? wasmFuncRef(v, this.#store, "WebAssembly.Global") : -1;
    wasmNative.globalSet(this.#store, this.#index, v, func);
  }
  valueOf() {
    return this.value;
  }
}

class WasmTable {
  #store;
  #index;
  constructor(descriptor, value) {
    if (descriptor === wasmWrap) {
      this.#store = value;
      this.#index = arguments[2];
      return;
    }
    requireArgs(arguments.length, 1, "WebAssembly.Table");
    const d = wasmDescriptor(descriptor, "WebAssembly.Table");
    wasmRefType(d.element, "WebAssembly.Table");
    const initial = wasmIndex(d.initial, "WebAssembly.Table: initial");
    const max = d.maximum;
    const maximum = max === undefined ? undefined : wasmIndex(max, "WebAssembly.Table: maximum");
    if (initial > 10000000) throw new RangeError("WebAssembly.Table: initial is above 10000000");
    if (maximum !== undefined && maximum < initial) throw new RangeError("WebAssembly.Table: maximum is below initial");
    const store = wasmJsStore();
    const func = value === undefined ? -1 : wasmFuncRef(value, store, "WebAssembly.Table");
    this.#index = wasmNative.tableNew(store, initial, maximum === undefined ? -1 : maximum, func);
    this.#store = store;
  }
  static at(t) {
    return wasmIsObject(t) && #index in t ? [t.#store, t.#index] : undefined;
  }
  get length() {
    return wasmNative.tableLength(this.#store, this.#index);
  }
  get(index) {
    const store = this.#store;
    requireArgs(arguments.length, 1, "WebAssembly.Table.get");
    const f = wasmNative.tableGet(store, this.#index, wasmIndex(index, "WebAssembly.Table.get: index"));
    return f < 0 ? null : wasmFunction(store, f);
  }
  set(index, value) {
    const store = this.#store;
    requireArgs(arguments.length, 1, "WebAssembly.Table.set");
    const at = wasmIndex(index, "WebAssembly.Table.set: index");
    const func =
      arguments.length < 2 || value === undefined ? -1 : wasmFuncRef(value, store, "WebAssembly.Table.set");
    wasmNative.tableSet(store, this.#index, at, func);
  }
  grow(delta, value) {
    const store = this.#store;
    requireArgs(arguments.length, 1, "WebAssembly.Table.grow");
    const n = wasmIndex(delta, "WebAssembly.Table.grow: delta");
    const func = value === undefined ? -1 : wasmFuncRef(value, store, "WebAssembly.Table.grow");
    return wasmNative.tableGrow(store, this.#index, n, func);
  }
}

// The spec's class shapes: names without the "Wasm" prefix and a
// `WebAssembly.X` toStringTag on each prototype.
function wasmInterface(C, name) {
  ObjectDefineProperty(C, "name", { __proto__: null, value: name, configurable: true });
  ObjectDefineProperty(C.prototype, Symbol.toStringTag, {
    __proto__: null,
    value: `WebAssembly.${name}`,
    configurable: true,
  });
}
wasmInterface(WasmModule, "Module");
wasmInterface(WasmInstance, "Instance");
wasmInterface(WasmMemory, "Memory");
wasmInterface(WasmGlobal, "Global");
wasmInterface(WasmTable, "Table");
// The helpers are not the spec's statics.
const wasmGlobalAt = WasmGlobal.at;
const wasmMemoryAt = WasmMemory.at;
const wasmTableAt = WasmTable.at;
delete WasmGlobal.at;
delete WasmMemory.at;
delete WasmMemory.wrap;
delete WasmTable.at;

const wasmNamespaceMethods = {
  validate(bytes) {
    requireArgs(arguments.length, 1, "WebAssembly.validate");
    return wasmNative.validate(wasmBytes(bytes, "WebAssembly.validate"));
  },
  compile(bytes) {
    return new Promise((resolve) => {
      requireArgs(arguments.length, 1, "WebAssembly.compile");
      resolve(new WasmModule(bytes));
    });
  },
  instantiate(source, importObject) {
    const isModule = wasmIsObject(source) && source instanceof WasmModule;
    return new Promise((resolve) => {
      requireArgs(arguments.length, 1, "WebAssembly.instantiate");
      if (isModule) {
        resolve(new WasmInstance(source, importObject));
        return;
      }
      const module = new WasmModule(source);
      resolve({ module, instance: new WasmInstance(module, importObject) });
    });
  },
};

function wasmNamespace() {
  const ns = {};
  const members = [
    ["compile", wasmNamespaceMethods.compile],
    ["validate", wasmNamespaceMethods.validate],
    ["instantiate", wasmNamespaceMethods.instantiate],
    ["Module", WasmModule],
    ["Instance", WasmInstance],
    ["Memory", WasmMemory],
    ["Global", WasmGlobal],
    ["Table", WasmTable],
    ["CompileError", WasmCompileError],
    ["LinkError", WasmLinkError],
    ["RuntimeError", WasmRuntimeError],
  ];
  for (let i = 0; i < members.length; i++) {
    const value = members[i][1];
    ObjectDefineProperty(ns, members[i][0], { __proto__: null, value, writable: true, configurable: true });
  }
  ObjectDefineProperty(ns, Symbol.toStringTag, { __proto__: null, value: "WebAssembly", configurable: true });
  return ns;
}
const WebAssembly = wasmNative === undefined ? globalObject.WebAssembly : wasmNamespace();

// @part core
define("WebAssembly", WebAssembly);
