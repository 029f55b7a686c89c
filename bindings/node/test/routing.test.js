'use strict';
const test = require('node:test');
const assert = require('node:assert');
const mcpopt = require('..');

const CONFIG = {
  mcpServers: { a: { command: 'x', group: 'fs' }, b: { command: 'x', group: 'fs' } },
  agents: { reader: { allowedTools: ['read_*'] } },
};

test('route by tool with recorded latencies', () => {
  const engine = new mcpopt.Engine(CONFIG);
  try {
    const tools = { tools: [{ name: 'read_file', annotations: { readOnlyHint: true } }, { name: 'write_file' }] };
    engine.router.setTools('a', tools);
    engine.router.setTools('b', tools.tools);
    assert.strictEqual(engine.route('missing').outcome, 'unknown-tool');
    for (let i = 0; i < 30; i++) {
      engine.router.record('a', 'read_file', 4);
      engine.router.record('b', 'read_file', 1);
    }
    const decision = engine.route({ method: 'tools/call', params: { name: 'read_file' } }, { strategy: 'predictive' });
    assert.strictEqual(decision.server, 'b');
    assert.deepStrictEqual(decision.fallbacks, ['a']);
    assert.ok(Math.abs(decision.predictedLatencyMs - 1) < 0.05);
    assert.match(decision.reasoning, /lowest predicted latency/);
    const unmet = engine.route('read_file', { maxResponseTime: '0.5ms' });
    assert.strictEqual(unmet.outcome, 'no-server-meets-requirements');
    assert.strictEqual(unmet.server, null);
    assert.strictEqual(engine.route('read_file', undefined, { agent: 'reader' }).outcome, 'chosen');
    assert.throws(() => engine.route('write_file', undefined, { agent: 'reader' }), (e) => e.status === mcpopt.Status.INVALID_ARGUMENT);
  } finally {
    engine.close();
  }
});

test('register, remove, stats and circuits', () => {
  const engine = new mcpopt.Engine(CONFIG);
  try {
    const { router } = engine;
    router.registerServer({ id: 'x', transport: 'http', tools: [{ name: 't' }], weight: 2 });
    assert.strictEqual(router.route('t').server, 'x');
    for (let i = 0; i < 12; i++) router.record('x', 't', 1, false);
    const x = router.stats().servers.find((s) => s.id === 'x');
    assert.strictEqual(x.circuit, 'open');
    assert.strictEqual(router.route('t').outcome, 'last-resort');
    assert.strictEqual(router.removeServer('x'), true);
    assert.strictEqual(router.removeServer('x'), false);
  } finally {
    engine.close();
  }
});

test('bad input names the field', () => {
  const engine = new mcpopt.Engine(CONFIG);
  try {
    assert.throws(() => engine.route('t', { minSuccessRate: 5 }), (e) => e.status === mcpopt.Status.INVALID_ARGUMENT && /\$\.requirements\.minSuccessRate/.test(e.message));
    assert.throws(() => engine.router.registerServer({ id: 'y', tools: [{ name: 1 }] }), /\$\.tools\[0\]\.name/);
    assert.throws(() => engine.router.record('nobody', 't', 1), (e) => e.status === mcpopt.Status.NOT_FOUND);
    assert.throws(() => engine.route(42), TypeError);
    assert.throws(() => engine.router.record('a', 't', -1), TypeError);
  } finally {
    engine.close();
  }
});
