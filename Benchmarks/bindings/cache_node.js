'use strict';
// Per-call cost of the cache from Node (N-API): get hit, get miss, set; Map.get for scale.
const mcpopt = require('../../bindings/node');
const engine = new mcpopt.Engine({ caching: { memoryCacheSize: '64MiB' } });
const { cache } = engine;
const key = Buffer.alloc(32, 'k');
const miss = Buffer.alloc(32, 'm');
const value = Buffer.alloc(256, 'v');
cache.set(key, value);
const map = new Map([[key.toString(), value]]);
function ns(fn) {
  const n = 300000;
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / n);
  }
  return Math.round(best);
}
const strKey = 'k'.repeat(32);
console.log(JSON.stringify({
  getHitNs: ns(() => cache.get(key)),
  getMissNs: ns(() => cache.get(miss)),
  setNs: ns(() => cache.set(key, value)),
  mapGetNs: ns(() => map.get(strKey)),
}));
engine.close();
