// The smallest Worker: answers every request with a fixed JSON body. The routes benchmark
// runs it in `wrangler dev` as the runtime's own floor, so the edgevideo rows can be read
// as what our Worker adds on top of it.
export default {
  async fetch() {
    return new Response('{"name":"hello"}', { headers: { "content-type": "application/json" } });
  },
};
