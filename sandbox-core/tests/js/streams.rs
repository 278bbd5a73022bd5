//! WHATWG streams in the prelude: ReadableStream, WritableStream,
//! TransformStream, the text streams and streamed Request/Response bodies.
//! The host does not stream response bodies yet, so the handlers consume
//! their streams within the request and report what they saw.

use bytes::Bytes;
use corral::Limits;
use serde_json::{Value, json};

use crate::Tenant;

/// Deploys `source` and returns the JSON its handler answers to GET /.
async fn run_json(name: &str, source: &str) -> Value {
    let t = Tenant::new(name, source, Limits::default());
    let body = t.text("/").await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn readable_stream_start_pull_and_cancel() {
    let v = run_json(
        "readable",
        r#"
        const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
        export default { async fetch() {
            const log = [];
            let n = 0, inPull = false, overlapped = false;
            const s = new ReadableStream({
                start(c) { log.push(`start ${c.desiredSize}`); c.enqueue("s"); },
                async pull(c) {
                    if (inPull) overlapped = true;
                    inPull = true;
                    log.push(`pull ${c.desiredSize}`);
                    await sleep(2);
                    n += 1;
                    if (n <= 3) c.enqueue(n); else c.close();
                    inPull = false;
                },
            }, { highWaterMark: 2 });
            // Before any read, pull fills the queue up to the highWaterMark.
            await sleep(20);
            const beforeRead = log.slice();
            const r = s.getReader();
            const seen = [];
            for (;;) { const { value, done } = await r.read(); if (done) break; seen.push(value); }
            await r.closed;
            const after = await r.read();

            // cancel: the source learns the reason, waiting and later reads end.
            let reason = "none";
            const c2 = new ReadableStream({ pull() {}, cancel(why) { reason = why; } });
            const r2 = c2.getReader();
            const pending = r2.read();
            await r2.cancel("bye");
            const endedRead = await pending;
            return Response.json({
                seen, beforeRead, pulls: log.length - 1, n, overlapped, after, locked: s.locked,
                reason, endedRead, afterCancel: await r2.read(),
            });
        } }"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "seen": ["s", 1, 2, 3],
            // start sees the whole highWaterMark; pull runs while the queue
            // is below it or a read waits, one call at a time, until close.
            "beforeRead": ["start 2", "pull 1"],
            "pulls": 4,
            "n": 4,
            "overlapped": false,
            "after": { "done": true },
            "locked": true,
            "reason": "bye",
            "endedRead": { "done": true },
            "afterCancel": { "done": true },
        })
    );
}

#[tokio::test]
async fn readable_stream_strategy_and_desired_size() {
    let v = run_json(
        "strategy",
        r#"export default { async fetch() {
            let pulls = 0;
            const sizes = [];
            const s = new ReadableStream({
                pull(c) { pulls++; c.enqueue("x".repeat(pulls)); sizes.push(c.desiredSize); },
            }, { highWaterMark: 6, size: (chunk) => chunk.length });
            await new Promise((r) => setTimeout(r, 5));
            const before = pulls;
            const { value } = await s.getReader().read();
            await new Promise((r) => setTimeout(r, 5));
            const counted = [];
            new ReadableStream({ start(c) { counted.push(c.desiredSize); c.enqueue("abc"); counted.push(c.desiredSize); } },
                new CountQueuingStrategy({ highWaterMark: 5 }));
            let bad;
            try { new ReadableStream({}, { highWaterMark: -1 }); } catch (e) { bad = e.constructor.name; }
            let badSize;
            const sized = new ReadableStream({ start(c) {
                try { c.enqueue("x"); } catch (e) { badSize = e.constructor.name; }
            } }, { size: () => -1 });
            let sizedState;
            await sized.getReader().read().catch((e) => { sizedState = e.constructor.name; });
            return Response.json({ before, value, pulls, sizes, counted,
                bad, badSize, sizedState, bl: new ByteLengthQueuingStrategy({ highWaterMark: 9 }).size(new Uint8Array(4)) });
        } }"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            // Sizes 1, 2, 3 fill the highWaterMark of 6; reading "x" frees
            // 1, so pull runs once more and overshoots with "xxxx".
            "before": 3,
            "value": "x",
            "pulls": 4,
            "sizes": [5, 3, 0, -3],
            "counted": [5, 4],
            "bad": "RangeError",
            "badSize": "RangeError",
            "sizedState": "RangeError",
            "bl": 4,
        })
    );
}

#[tokio::test]
async fn readable_stream_consumers() {
    let v = run_json(
        "consumers",
        r#"
        const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
        function counter(limit, onCancel) {
            let i = 0;
            return new ReadableStream({
                async pull(c) { await sleep(1); if (i < limit) c.enqueue(i++); else c.close(); },
                cancel(reason) { onCancel?.(reason); },
            });
        }
        export default { async fetch() {
            const forAwait = [];
            for await (const x of counter(4)) forAwait.push(x);

            // Leaving a for-await early cancels the stream...
            let cancelled = "no";
            const s = counter(100, (r) => { cancelled = String(r); });
            const firstTwo = [];
            for await (const x of s) { firstTwo.push(x); if (x === 1) break; }
            // ...unless preventCancel.
            const kept = counter(3);
            for await (const x of kept.values({ preventCancel: true })) break;
            const rest = [];
            for await (const x of kept) rest.push(x);

            const enc = new TextEncoder();
            const mixed = new ReadableStream({ start(c) {
                c.enqueue(enc.encode("he"));
                c.enqueue("llo ");
                c.enqueue(enc.encode("wo").buffer);
                c.enqueue(new DataView(enc.encode("rld").buffer));
                c.close();
            } });
            const text = await new Response(mixed).text();

            const fromArray = [];
            for await (const x of ReadableStream.from([1, Promise.resolve(2), 3])) fromArray.push(x);
            async function* gen() { yield "a"; await sleep(1); yield "b"; }
            const fromGen = await new Response(ReadableStream.from(gen())).text();
            let genReturned = false;
            async function* endless() { try { for (let i = 0; ; i++) yield i; } finally { genReturned = true; } }
            const fromEndless = ReadableStream.from(endless()).getReader();
            const e0 = (await fromEndless.read()).value;
            await fromEndless.cancel("stop");
            let notIterable;
            try { ReadableStream.from(42); } catch (e) { notIterable = e.constructor.name; }

            const [a, b] = counter(3).tee();
            const [ta, tb] = await Promise.all([
                (async () => { const o = []; for await (const x of a) o.push(x); return o; })(),
                (async () => { const o = []; for await (const x of b) o.push(x); return o; })(),
            ]);
            let teeCancel;
            const [c1, c2] = counter(9, (r) => { teeCancel = r; }).tee();
            // One branch's cancel settles only once both are cancelled.
            let firstSettled = false;
            const p1 = c1.cancel("one").then(() => { firstSettled = true; });
            await sleep(5);
            const beforeBoth = teeCancel === undefined && !firstSettled;
            await c2.cancel("two");
            await p1;
            return Response.json({ forAwait, firstTwo, cancelled, sLocked: s.locked, rest, text,
                fromArray, fromGen, e0, genReturned, notIterable, ta, tb, beforeBoth, teeCancel });
        } }"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "forAwait": [0, 1, 2, 3],
            "firstTwo": [0, 1],
            "cancelled": "undefined",
            "sLocked": false,
            // values() with preventCancel read one chunk and let go.
            "rest": [1, 2],
            "text": "hello world",
            "fromArray": [1, 2, 3],
            "fromGen": "ab",
            "e0": 0,
            "genReturned": true,
            "notIterable": "TypeError",
            "ta": [0, 1, 2],
            "tb": [0, 1, 2],
            "beforeBoth": true,
            "teeCancel": ["one", "two"],
        })
    );
}

#[tokio::test]
async fn stream_errors_follow_the_spec() {
    let v = run_json(
        "errors",
        r#"export default { async fetch() {
            const out = {};
            const name = (f) => { try { f(); return "no error"; } catch (e) { return e.constructor.name; } };
            const rejection = async (p) => { try { await p; return "resolved"; } catch (e) { return e instanceof Error ? `${e.constructor.name}: ${e.message}` : e; } };

            let ctl;
            const s = new ReadableStream({ start(c) { ctl = c; } });
            ctl.close();
            out.enqueueAfterClose = name(() => ctl.enqueue("x"));
            out.closeTwice = name(() => ctl.close());
            s.getReader();
            out.lockedGetReader = name(() => s.getReader());
            out.lockedCancel = await rejection(s.cancel());
            out.lockedResponse = name(() => new Response(s));

            const boom = new Error("boom");
            const errored = new ReadableStream({ start(c) { c.enqueue("first"); c.error(boom); } });
            const er = errored.getReader();
            out.erroredRead = await rejection(er.read());
            out.erroredClosed = await rejection(er.closed);
            out.sameError = await er.read().catch((e) => e === boom);
            out.closedDesiredSize = ctl.desiredSize;
            let ec;
            new ReadableStream({ start(c) { ec = c; } });
            ec.error("x");
            out.erroredDesiredSize = ec.desiredSize;

            const pullThrows = new ReadableStream({ pull() { throw new RangeError("no more"); } });
            out.pullThrows = await rejection(pullThrows.getReader().read());
            out.startThrows = name(() => new ReadableStream({ start() { throw new SyntaxError("s"); } }));
            out.startRejects = await rejection(new ReadableStream({ start: async () => { throw "late"; } }).getReader().read());

            const released = new ReadableStream({ pull() {} }).getReader();
            const waiting = released.read();
            released.releaseLock();
            out.releasedWaiting = await rejection(waiting);
            out.releasedRead = await rejection(released.read());
            out.releasedClosed = await rejection(released.closed);

            out.illegalController = name(() => new ReadableStreamDefaultController());
            out.illegalWriterController = name(() => new WritableStreamDefaultController());
            out.byteStream = name(() => new ReadableStream({ type: "bytes" }));
            out.byob = name(() => new ReadableStream().getReader({ mode: "byob" }));
            out.readerOfNonStream = name(() => new ReadableStreamDefaultReader({}));
            out.badChunk = await rejection(new Response(new ReadableStream({ start(c) { c.enqueue(42); c.close(); } })).text());
            return Response.json(out);
        } }"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "enqueueAfterClose": "TypeError",
            "closeTwice": "TypeError",
            "lockedGetReader": "TypeError",
            "lockedCancel": "TypeError: the stream is locked to a reader",
            "lockedResponse": "TypeError",
            // An error drops the queued chunks.
            "erroredRead": "Error: boom",
            "erroredClosed": "Error: boom",
            "sameError": true,
            "closedDesiredSize": 0,
            "erroredDesiredSize": null,
            "pullThrows": "RangeError: no more",
            "startThrows": "SyntaxError",
            "startRejects": "late",
            "releasedWaiting": "TypeError: the reader's lock was released",
            "releasedRead": "TypeError: the reader's lock was released",
            "releasedClosed": "TypeError: the reader's lock was released",
            "illegalController": "TypeError",
            "illegalWriterController": "TypeError",
            "byteStream": "TypeError",
            "byob": "TypeError",
            "readerOfNonStream": "TypeError",
            "badChunk": "TypeError: a streamed response body must yield Uint8Array (or string) chunks, got 42",
        })
    );
}

#[tokio::test]
async fn writable_stream_writes_in_order_one_at_a_time() {
    let v = run_json(
        "writable",
        r#"
        const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
        export default { async fetch() {
            const log = [];
            let busy = false, overlapped = false;
            const ws = new WritableStream({
                async start() { await sleep(2); log.push("start"); },
                async write(chunk, c) {
                    if (busy) overlapped = true;
                    busy = true;
                    await sleep(3 - chunk);
                    log.push(`write ${chunk}`);
                    busy = false;
                },
                close() { log.push("close"); },
            }, { highWaterMark: 2 });
            const w = ws.getWriter();
            const sizes = [w.desiredSize];
            const writes = [0, 1, 2].map((i) => w.write(i).then(() => log.push(`wrote ${i}`)));
            sizes.push(w.desiredSize);
            const ready = w.ready;
            const closed = w.close();
            let afterClose;
            await w.write(9).catch((e) => { afterClose = e.constructor.name; });
            await Promise.all([...writes, closed, w.closed]);
            sizes.push(w.desiredSize);
            await ready;

            // A failing write errors the stream: later writes and closed reject.
            const failing = new WritableStream({ write(chunk) { if (chunk === "bad") throw new Error("sink says no"); } });
            const fw = failing.getWriter();
            await fw.write("ok");
            const bad = await fw.write("bad").catch((e) => e.message);
            const later = await fw.write("more").catch((e) => e.message);
            const fclosed = await fw.closed.catch((e) => e.message);

            // abort: queued writes reject with the reason, the sink's abort sees it.
            let aborted;
            const slow = new WritableStream({ write: () => sleep(5), abort(r) { aborted = r; } });
            const sw = slow.getWriter();
            const first = sw.write("a");
            await sleep(1); // "a" is now with the sink
            const second = sw.write("b").catch((e) => `b: ${e}`);
            const abort = await sw.abort("enough").then(() => "abort resolved");
            const sclosed = await sw.closed.catch((e) => `closed: ${e}`);

            let lockedWriter;
            try { slow.getWriter(); } catch (e) { lockedWriter = e.constructor.name; }
            sw.releaseLock();
            const releasedWrite = await sw.write("x").catch((e) => e.constructor.name);
            return Response.json({ log, overlapped, sizes, afterClose, bad, later, fclosed,
                firstDone: await first.then(() => true), second: await second, abort, aborted, sclosed,
                lockedWriter, releasedWrite, locked: slow.locked });
        } }"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            // The sink's close follows the last write at once, before that
            // write's promise reactions run.
            "log": ["start", "write 0", "wrote 0", "write 1", "wrote 1", "write 2", "close", "wrote 2"],
            "overlapped": false,
            "sizes": [2, -1, 0],
            "afterClose": "TypeError",
            "bad": "sink says no",
            "later": "sink says no",
            "fclosed": "sink says no",
            // The write under way finishes; the queued one is dropped.
            "firstDone": true,
            "second": "b: enough",
            "abort": "abort resolved",
            "aborted": "enough",
            "sclosed": "closed: enough",
            "lockedWriter": "TypeError",
            "releasedWrite": "TypeError",
            "locked": false,
        })
    );
}

#[tokio::test]
async fn transform_stream_writer_runs_at_most_one_chunk_ahead() {
    let v = run_json(
        "backpressure",
        r#"
        const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
        export default { async fetch() {
            const events = [];
            const { readable, writable } = new TransformStream();
            const writer = writable.getWriter();
            const writing = (async () => {
                for (let i = 0; i < 5; i++) { await writer.write(i); events.push(`wrote ${i}`); }
                await writer.close();
                events.push("closed");
            })();
            // Nobody reads yet: the first write waits.
            await sleep(20);
            const beforeReading = events.length;
            const reader = readable.getReader();
            for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                events.push(`read ${value}`);
                await sleep(3);
            }
            await writing;
            let ahead = 0, maxAhead = 0;
            for (const e of events) {
                if (e.startsWith("wrote")) ahead++;
                if (e.startsWith("read")) ahead--;
                maxAhead = Math.max(maxAhead, ahead);
            }

            // A transformer: start, transform, flush; its output is read with backpressure too.
            const upper = new TransformStream({
                start(c) { c.enqueue("<"); },
                transform(chunk, c) { c.enqueue(chunk.toUpperCase()); c.enqueue("|"); },
                flush(c) { c.enqueue(">"); },
            });
            const uw = upper.writable.getWriter();
            uw.write("ab"); uw.write("cd"); uw.close();
            const out = [];
            for await (const x of upper.readable) out.push(x);

            // terminate() closes the readable side and errors the writable one.
            const term = new TransformStream({ transform(chunk, c) { c.enqueue(chunk); c.terminate(); } });
            const tw = term.writable.getWriter();
            const tr = term.readable.getReader();
            tw.write("last");
            const t1 = await tr.read();
            const t2 = await tr.read();
            const afterTerminate = await tw.write("more").catch((e) => e.message);

            // controller.error() errors both sides; a throwing transform does too.
            const failing = new TransformStream({ transform() { throw new Error("no"); } });
            const fw = failing.writable.getWriter();
            const fr = failing.readable.getReader();
            const [wErr, rErr] = await Promise.all([fw.write(1).catch((e) => e.message), fr.read().catch((e) => e.message)]);

            // Cancelling the readable side errors the writable side with the reason.
            const cancelled = new TransformStream({ cancel(r) { events.push(`cancel ${r}`); } });
            const cw = cancelled.writable.getWriter();
            const pendingWrite = cw.write("x").catch((e) => `write: ${e}`);
            await cancelled.readable.cancel("gone");
            return Response.json({ events, beforeReading, maxAhead, out, t1, t2, afterTerminate, wErr, rErr,
                pendingWrite: await pendingWrite, cwClosed: await cw.closed.catch((e) => e) });
        } }"#,
    )
    .await;
    // The writer's first write waits for the first read; after that each
    // write completes only once the reader has taken the chunk, so the
    // writer is never more than one chunk ahead.
    assert_eq!(v["beforeReading"], 0, "no write resolves before a read");
    assert_eq!(
        v["events"],
        json!([
            "read 0",
            "wrote 0",
            "read 1",
            "wrote 1",
            "read 2",
            "wrote 2",
            "read 3",
            "wrote 3",
            "read 4",
            "wrote 4",
            "closed",
            "cancel gone",
        ])
    );
    assert!(v["maxAhead"].as_i64().unwrap() <= 1);
    assert_eq!(v["out"], json!(["<", "AB", "|", "CD", "|", ">"]));
    assert_eq!(v["t1"], json!({ "value": "last", "done": false }));
    assert_eq!(v["t2"], json!({ "done": true }));
    assert_eq!(v["afterTerminate"], "the TransformStream was terminated");
    assert_eq!(v["wErr"], "no");
    assert_eq!(v["rErr"], "no");
    assert_eq!(v["pendingWrite"], "write: gone");
    assert_eq!(v["cwClosed"], "gone");
}

#[tokio::test]
async fn server_sent_events_pattern() {
    // The Workers SSE idiom, with the loop run freely or under waitUntil;
    // the stream is read within the request since the host cannot stream yet.
    let t = Tenant::new(
        "sse",
        r#"
        function events(ctx) {
            const { readable, writable } = new TransformStream();
            const writer = writable.getWriter();
            const enc = new TextEncoder();
            const loop = async () => {
                for (let i = 0; i < 3; i++) {
                    await writer.write(enc.encode(`data: ${i}\n\n`));
                    await new Promise((r) => setTimeout(r, 50));
                }
                await writer.close();
            };
            if (ctx) ctx.waitUntil(loop()); else loop();
            return new Response(readable, { headers: { "content-type": "text/event-stream" } });
        }
        export default { async fetch(req, env, ctx) {
            const res = events(new URL(req.url).pathname === "/wait" ? ctx : null);
            const started = Date.now();
            const text = await res.text();
            return Response.json({ text, type: res.headers.get("content-type"), used: res.bodyUsed,
                slow: Date.now() - started >= 100 });
        } }"#,
        Limits::default(),
    );
    for path in ["/", "/wait"] {
        let v: Value = serde_json::from_str(&t.text(path).await).unwrap();
        assert_eq!(
            v,
            json!({
                "text": "data: 0\n\ndata: 1\n\ndata: 2\n\n",
                "type": "text/event-stream",
                "used": true,
                "slow": true,
            }),
            "{path}"
        );
    }
}

#[tokio::test]
async fn text_streams_keep_characters_split_across_chunks() {
    let v = run_json(
        "text",
        r#"export default { async fetch() {
            const chunks = (...parts) => ReadableStream.from(parts.map((p) => new Uint8Array(p)));
            const collect = async (s) => { const o = []; for await (const x of s) o.push(x); return o; };
            // "€" = E2 82 AC, "😀" = F0 9F 98 80, a BOM split too.
            const decoded = await collect(chunks([0xef, 0xbb], [0xbf, 0xe2], [0x82], [0xac, 0x41, 0xf0, 0x9f], [0x98, 0x80])
                .pipeThrough(new TextDecoderStream()));
            const truncated = await collect(chunks([0x41, 0xe2, 0x82]).pipeThrough(new TextDecoderStream()));
            const fatal = await collect(chunks([0x41, 0xe2, 0x82]).pipeThrough(new TextDecoderStream("utf-8", { fatal: true })))
                .catch((e) => e.constructor.name);
            const keepBom = await collect(chunks([0xef], [0xbb, 0xbf, 0x42]).pipeThrough(new TextDecoderStream("utf8", { ignoreBOM: true })));

            const td = new TextDecoder();
            const streamed = [td.decode(new Uint8Array([0xf0, 0x9f]), { stream: true }),
                td.decode(new Uint8Array([0x98, 0x80]), { stream: true }), td.decode()];

            // TextEncoderStream: a surrogate pair split across chunks.
            const emoji = "😀";
            const encoded = await collect(ReadableStream.from(["h", emoji[0], emoji[1] + "é"]).pipeThrough(new TextEncoderStream()));
            const roundTrip = await new Response(ReadableStream.from(["x€", "y"])
                .pipeThrough(new TextEncoderStream()).pipeThrough(new TextDecoderStream())).text();
            return Response.json({ decoded, truncated, fatal, keepBom, streamed,
                encoded: encoded.map((b) => Array.from(b)), roundTrip,
                enc: new TextEncoderStream().encoding, dec: new TextDecoderStream().encoding });
        } }"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "decoded": ["€A", "😀"],
            "truncated": ["A", "\u{fffd}"],
            "fatal": "TypeError",
            "keepBom": ["\u{feff}B"],
            "streamed": ["", "😀", ""],
            "encoded": [[104], [240, 159, 152, 128, 195, 169]],
            "roundTrip": "x€y",
            "enc": "utf-8",
            "dec": "utf-8",
        })
    );
}

#[tokio::test]
async fn pipe_to_and_pipe_through() {
    let v = run_json(
        "pipes",
        r#"
        const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
        const source = (items, fail) => new ReadableStream({
            async pull(c) {
                await sleep(1);
                if (items.length) c.enqueue(items.shift());
                else if (fail) c.error(fail);
                else c.close();
            },
            cancel(r) { log.push(`source cancelled: ${r}`); },
        });
        const sink = (got, failOn) => new WritableStream({
            write(chunk) { if (chunk === failOn) throw "sink failed"; got.push(chunk); },
            close() { log.push("sink closed"); },
            abort(r) { log.push(`sink aborted: ${r}`); },
        });
        let log = [];
        export default { async fetch() {
            const out = {};
            const got = [];
            await source(["a", "b", "c"])
                .pipeThrough(new TransformStream({ transform(x, c) { c.enqueue(x.toUpperCase()); } }))
                .pipeTo(sink(got));
            out.piped = got; out.log1 = log; log = [];

            const got2 = [];
            out.sourceError = await source(["x"], "source failed").pipeTo(sink(got2)).catch((e) => e);
            out.got2 = got2; out.log2 = log; log = [];

            out.sinkError = await source(["1", "2", "3"]).pipeTo(sink([], "2")).catch((e) => e);
            out.log3 = log; log = [];

            const got4 = [];
            const dest = sink(got4);
            const src = source(["p"]);
            await src.pipeTo(dest, { preventClose: true });
            out.preventClose = { got4, log: log, srcLocked: src.locked, destLocked: dest.locked };
            log = [];
            const s = source([]);
            s.getReader();
            out.lockedPipe = await s.pipeTo(sink([])).catch((e) => e.constructor.name);
            out.notWritable = await source([]).pipeTo({}).catch((e) => e.constructor.name);
            return Response.json(out);
        } }"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "piped": ["A", "B", "C"],
            "log1": ["sink closed"],
            "sourceError": "source failed",
            "got2": ["x"],
            "log2": ["sink aborted: source failed"],
            "sinkError": "sink failed",
            "log3": ["source cancelled: sink failed"],
            "preventClose": { "got4": ["p"], "log": [], "srcLocked": false, "destLocked": false },
            "lockedPipe": "TypeError",
            "notWritable": "TypeError",
        })
    );
}

#[tokio::test]
async fn request_and_response_bodies_stream() {
    let t = Tenant::new(
        "bodies",
        r#"export default { async fetch(req) {
            const path = new URL(req.url).pathname;
            // An untouched body stream handed on stays bytes for the host.
            if (path === "/echo") return new Response(req.body, { headers: { "x-used": String(req.bodyUsed) } });
            if (path === "/get") return Response.json({ body: req.body, used: req.bodyUsed });
            const out = {};
            const r = req.body.getReader();
            out.isStream = req.body instanceof ReadableStream;
            out.locked = req.body.locked;
            const chunks = [];
            for (;;) { const { value, done } = await r.read(); if (done) break; chunks.push(new TextDecoder().decode(value)); }
            out.chunks = chunks;
            out.used = req.bodyUsed;
            out.again = await req.text().catch((e) => e.constructor.name);

            // A Request and a Response holding a stream.
            const enc = new TextEncoder();
            const make = () => new ReadableStream({ start(c) { c.enqueue(enc.encode("str")); c.enqueue("eam"); c.close(); } });
            const posted = new Request("https://x.example/", { method: "POST", body: make() });
            out.postType = posted.headers.get("content-type");
            out.postText = await posted.text();
            out.postUsed = posted.bodyUsed;
            out.twice = await posted.text().catch((e) => e.constructor.name);
            out.getWithStream = (() => { try { new Request("https://x.example/", { body: make() }); } catch (e) { return e.constructor.name; } })();
            // A Request made from a streamed one takes its stream over.
            const orig = new Request("https://x.example/", { method: "PUT", body: make() });
            const moved = new Request(orig);
            out.moved = [await moved.text(), moved.method, orig.bodyUsed];

            const res = new Response(make(), { status: 201 });
            out.resType = res.headers.get("content-type");
            const copy = res.clone();
            out.clones = [await res.text(), new Uint8Array(await copy.arrayBuffer()).length];
            out.cloneUsed = (() => { try { res.clone(); } catch (e) { return e.constructor.name; } })();

            // A bytes body's stream is a fresh one-chunk copy.
            const b = new Response("bytes");
            const stream = b.body;
            out.same = b.body === stream;
            out.bytesChunk = await stream.getReader().read().then(({ value }) => [value.length, value instanceof Uint8Array]);
            out.bytesUsed = [b.bodyUsed, await b.text().catch((e) => e.constructor.name)];
            const t = new Response("t");
            await t.text();
            out.afterText = [t.bodyUsed, t.body.locked, await t.body.getReader().read()];
            out.noBody = [new Response(null).body, new Response().bodyUsed];
            const jsonRes = new Response(ReadableStream.from(['{"a":', "[1,2]}"]));
            out.json = await jsonRes.json();
            out.bytesFromStream = Array.from(await new Response(ReadableStream.from([new Uint8Array([1, 2]), new Uint8Array([3])])).bytes());
            return Response.json(out);
        } }"#,
        Limits::default(),
    );
    let post = |path: &str, body: &'static str| {
        http::Request::post(path)
            .header("host", "app.example")
            .body(Bytes::from_static(body.as_bytes()))
            .unwrap()
    };
    let resp = t.send(post("/", "hello stream")).await.unwrap();
    let v: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(
        v,
        json!({
            "isStream": true,
            "locked": true,
            "chunks": ["hello stream"],
            "used": true,
            "again": "TypeError",
            "postType": null,
            "postText": "stream",
            "postUsed": true,
            "twice": "TypeError",
            "getWithStream": "TypeError",
            "moved": ["stream", "PUT", true],
            "resType": null,
            "clones": ["stream", 6],
            "cloneUsed": "TypeError",
            "same": true,
            "bytesChunk": [5, true],
            "bytesUsed": [true, "TypeError"],
            "afterText": [true, false, { "done": true }],
            "noBody": [null, false],
            "json": { "a": [1, 2] },
            "bytesFromStream": [1, 2, 3],
        })
    );

    let echo = t.send(post("/echo", "echo me")).await.unwrap();
    assert_eq!(echo.body().as_ref(), b"echo me");
    assert_eq!(echo.headers()["x-used"], "false");
    assert!(echo.headers().get("content-type").is_none());
    // Request.body is null without a body; JSON.stringify(null) is null.
    let get: Value = serde_json::from_str(&t.text("/get").await).unwrap();
    assert_eq!(get, json!({ "body": null, "used": false }));
}

#[tokio::test]
async fn a_streamed_response_reaches_the_host_as_a_stream() {
    // `run` hands the host a streamed head; dropping the body (the client
    // went away) cancels the guest's stream with the host's reason.
    let t = Tenant::new(
        "streamed",
        r#"export default { async fetch(req) {
            const path = new URL(req.url).pathname;
            if (path === "/cancelled") return new Response(String(globalThis.cancelledWith));
            if (path === "/sse") return new Response(new TransformStream().readable);
            return new Response(new ReadableStream({
                pull(c) { c.enqueue("tick"); },
                cancel(reason) { globalThis.cancelledWith = reason; },
            }));
        } }"#,
        Limits::default(),
    );
    use http_body_util::BodyExt as _;
    let idle = t.open("/sse").await.unwrap().into_body();
    assert!(idle.is_stream());
    let mut body = t.open("/").await.unwrap().into_body();
    assert!(body.is_stream());
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "tick");
    drop((body, idle));
    let started = std::time::Instant::now();
    while t.text("/cancelled").await != "the response stream was closed" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "never cancelled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn only_the_standard_stream_classes_become_globals() {
    let v = run_json(
        "globals",
        r#"export default { async fetch() {
            const streamy = Object.getOwnPropertyNames(globalThis)
                .filter((n) => /Stream|Queuing|Body|Text/.test(n)).sort();
            const internal = ["Body", "rsOf", "wsOf", "INTERNAL", "tee", "pipe", "iterate", "deferred",
                "bytesStream", "wholeBytes", "readAll", "extractBody", "internals", "host", "__corral_host"]
                .filter((n) => n in globalThis);
            return Response.json({ streamy, internal });
        } }"#,
    )
    .await;
    assert_eq!(
        v,
        json!({
            "streamy": [
                "ByteLengthQueuingStrategy",
                "CompressionStream",
                "CountQueuingStrategy",
                "DecompressionStream",
                "ReadableStream",
                "ReadableStreamDefaultController",
                "ReadableStreamDefaultReader",
                "TextDecoder",
                "TextDecoderStream",
                "TextEncoder",
                "TextEncoderStream",
                "TransformStream",
                "TransformStreamDefaultController",
                "WritableStream",
                "WritableStreamDefaultController",
                "WritableStreamDefaultWriter",
            ],
            "internal": [],
        })
    );
}
