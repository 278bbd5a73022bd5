// The JavaScript side of the engine conformance suite: the same routes as app.wat.
export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    const text = { "content-type": "text/plain" };
    if (path === "/hello") return new Response("hello\n", { headers: text });
    if (path === "/echo") {
      return new Response(await request.arrayBuffer(), {
        headers: { "content-type": "application/octet-stream" },
      });
    }
    if (path === "/teapot") {
      return new Response("short and stout\n", {
        status: 418,
        headers: { ...text, "x-kind": "teapot" },
      });
    }
    if (path === "/spin") for (;;) {}
    if (path === "/recurse") {
      const f = (n) => f(n + 1) + 1;
      f(0);
    }
    return new Response("not found\n", { status: 404, headers: text });
  },
};
