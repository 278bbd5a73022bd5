// The demo app corral-server deploys as `demo` on first start:
//   curl localhost:8080/apps/demo/
export default {
  async fetch(request) {
    return new Response(`Hello from Corral! (${request.method})\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
};
