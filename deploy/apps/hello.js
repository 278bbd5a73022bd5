// A Workers-style app: deploy it with the curl commands in the README.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const name = url.searchParams.get("name") ?? "world";
    const visits = Number((await env.KV.get("visits")) ?? "0") + 1;
    await env.KV.put("visits", String(visits));
    console.log(`visit ${visits} from ${name}`); // GET /api/apps/hello/logs
    return new Response(`Hello, ${name}! (visit ${visits})\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
};
