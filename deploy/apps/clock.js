// A streaming app (Server-Sent Events): five ticks of the clock, one a second.
// The head goes out at once and each event as it is written; the stream counts
// against the tier's max_streams, not its compute shares.
export default {
  fetch(request, env, ctx) {
    const { readable, writable } = new TransformStream();
    const writer = writable.getWriter();
    const encoder = new TextEncoder();
    ctx.waitUntil((async () => {
      for (let tick = 1; tick <= 5; tick++) {
        const now = new Date().toISOString().slice(11, 19);
        await writer.write(encoder.encode(`id: ${tick}\ndata: ${now} UTC\n\n`));
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      await writer.write(encoder.encode("event: done\ndata: bye\n\n"));
      await writer.close();
    })());
    return new Response(readable, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
    });
  },
};
