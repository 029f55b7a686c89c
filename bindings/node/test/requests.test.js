'use strict';
// optimizeRequest from Node against a real MCP server over stdio (Tests/interop/kv_server.py, a
// FastMCP server), run with the repository's .venv Python.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { Engine, MCPOptError, Status } = require('..');

const repo = path.resolve(__dirname, '..', '..', '..');
const python = process.env.MCPOPT_PYTHON || path.join(repo, '.venv', 'bin', 'python');
const available = fs.existsSync(python);

function config() {
  return {
    mcpServers: {
      kv: { command: python, args: [path.join(repo, 'Tests', 'interop', 'kv_server.py'), '--name', 'kv'], trustAnnotations: true },
    },
  };
}

const text = (r) => r.response.result.content[0].text;

test('requests are served, cached, merged and reported', { skip: !available && 'no .venv python' }, async () => {
  const engine = new Engine(config());
  try {
    const seen = [];
    engine.on('cacheHit', (data) => seen.push(['cacheHit', data.tool]));
    engine.on('cacheMiss', (data) => seen.push(['cacheMiss', data.tool]));
    await engine.start();
    const put = await engine.callTool('put', { key: 'a', value: '1' });
    assert.strictEqual(put.success, true);
    assert.strictEqual(put.server, 'kv');
    const first = await engine.callTool('get', { key: 'a' });
    const second = await engine.optimizeRequest({ jsonrpc: '2.0', id: 'mine', method: 'tools/call', params: { name: 'get', arguments: { key: 'a' } } });
    assert.deepStrictEqual([first.cacheSource, second.cacheSource], ['origin', 'memory']);
    assert.strictEqual(second.response.id, 'mine');
    assert.strictEqual(text(second), '1');

    // Ten identical slow reads at once: one reaches the server.
    const all = await Promise.all(Array.from({ length: 10 }, () => engine.callTool('slow_get', { key: 'k', ms: 300 })));
    assert.strictEqual(all.filter((r) => r.cacheSource === 'origin').length, 1);
    const reads = await engine.callTool('reads_served', {}, { bypassCache: true, servers: ['kv'] });
    assert.strictEqual(text(reads), '2');

    const metrics = engine.getOptimizationMetrics();
    // libuv runs 4 blocking calls at a time: reads queued behind the first may find it cached.
    const hits = 1 + all.filter((r) => r.cacheSource === 'memory').length;
    assert.strictEqual(metrics.cache.hits, hits);
    assert.match(engine.prometheusMetrics(), new RegExp(`mcpopt_cache_hits_total ${hits}\\n`));
    const health = await engine.performHealthCheck();
    assert.strictEqual(health.status, 'healthy');
    // Events arrive on the JS thread, asynchronously.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(seen.some(([name, tool]) => name === 'cacheHit' && tool === 'get'), JSON.stringify(seen));

    await assert.rejects(engine.optimizeRequest('{nope'), (err) => err instanceof MCPOptError && err.status === Status.MALFORMED_JSON);
    const unknown = await engine.callTool('no_such_tool', {});
    assert.strictEqual(unknown.success, false);
    assert.strictEqual(unknown.response.error.code, -32602);
  } finally {
    engine.close();
  }
  await assert.rejects(engine.callTool('get', { key: 'a' }), (err) => err.status === Status.INVALID_HANDLE);
});

test('requests in flight do not hold libuv pool threads', { skip: !available && 'no .venv python' }, async () => {
  // Eight 1.5 s calls in flight (more than libuv's 4 pool threads): a file read, which needs a
  // pool thread, still completes before any of them. With blocking calls on the pool it would
  // wait for one to finish.
  const engine = new Engine(config());
  try {
    await engine.start();
    const order = [];
    const calls = [];
    for (let i = 0; i < 8; i++) {
      calls.push(engine.callTool('wait_ms', { ms: 1500 }, { bypassCache: true }).then((r) => { order.push('call'); return r; }));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));   // let them all start
    await fs.promises.readFile(__filename).then(() => order.push('file'));
    const results = await Promise.all(calls);
    assert.strictEqual(order[0], 'file', `the file read waited for a call: ${order}`);
    for (const r of results) assert.strictEqual(r.success, true, r.error);
  } finally {
    engine.close();
  }
});
