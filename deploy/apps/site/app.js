// The dynamic part of the site bundle; files under static/ are served from the cache.
export default {
  async fetch(request) {
    return Response.json({ path: new URL(request.url).pathname, method: request.method });
  },
};
