'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const mcpopt = require('..');

const example = process.env.MCPOPT_EXAMPLE_CONFIG || path.join(__dirname, '..', '..', '..', 'examples', 'mcpopt.json');

test('version and ABI', () => {
  assert.strictEqual(mcpopt.version(), '0.1.0');
  assert.strictEqual(mcpopt.ABI_VERSION, 1);
  assert.strictEqual(mcpopt.statusString(mcpopt.Status.INVALID_CONFIG), 'invalid config');
});

test('engine from a real config file', () => {
  const engine = new mcpopt.Engine(fs.readFileSync(example, 'utf8'));
  const info = engine.describe();
  assert.strictEqual(info.servers.active, 4);
  assert.deepStrictEqual(info.servers.groups.search, ['search-a', 'search-b']);
  assert.strictEqual(info.config.caching.memoryCacheSize, 64 * 1024 * 1024);
  assert.strictEqual(info.allocator, 'system');
  assert.ok(!JSON.stringify(info).includes('example-token'));
  engine.close();
  assert.ok(engine.closed);
  engine.close();
  assert.throws(() => engine.describe(), (err) => err instanceof mcpopt.MCPOptError && err.status === mcpopt.Status.INVALID_HANDLE);
});

test('engine from an object fills defaults', () => {
  const engine = new mcpopt.Engine({ mcpServers: { t: { command: 'mcp-server-time' } } });
  try {
    const config = engine.describe().config;
    assert.strictEqual(config.routing.minConfidence, 0.7);
    assert.strictEqual(config.mcpServers.t.type, 'stdio');
  } finally {
    engine.close();
  }
});

test('invalid config names JSON paths', () => {
  const bad = { mcpServers: { git: { command: 'mcp-server-git', args: ['--repository', 7] } }, routing: { minConfidence: 1.5 }, cachng: {} };
  assert.throws(() => new mcpopt.Engine(bad), (err) => {
    assert.ok(err instanceof mcpopt.ConfigError);
    assert.strictEqual(err.status, mcpopt.Status.INVALID_CONFIG);
    assert.strictEqual(err.statusName, 'invalid config');
    assert.deepStrictEqual(err.issues.map((i) => i.path), ['$.mcpServers.git.args[1]', '$.routing.minConfidence', '$.cachng']);
    assert.match(err.issues[2].message, /did you mean "caching"/);
    return true;
  });
  assert.deepStrictEqual(mcpopt.validateConfig(bad).map((i) => i.path), ['$.mcpServers.git.args[1]', '$.routing.minConfidence', '$.cachng']);
  assert.deepStrictEqual(mcpopt.validateConfig({}), []);
});

test('bad text is a ConfigError with a status', () => {
  const cases = [
    ['{"mcpServers":', mcpopt.Status.MALFORMED_JSON],
    ['', mcpopt.Status.MALFORMED_JSON],
    [Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), mcpopt.Status.INVALID_UTF8],
    ['[]', mcpopt.Status.INVALID_CONFIG],
  ];
  for (const [text, status] of cases) {
    assert.throws(() => new mcpopt.Engine(text), (err) => err instanceof mcpopt.ConfigError && err.status === status && err.issues[0].path === '$');
  }
});

test('wrong argument types are TypeErrors', () => {
  assert.throws(() => new mcpopt.Engine(42), TypeError);
  assert.throws(() => new mcpopt.Engine(null), TypeError);
  const native = require('../lib/native');
  assert.throws(() => native.engineDescribe({}), TypeError);
  assert.throws(() => native.engineCreate(), TypeError);
  assert.throws(() => native.statusString('x'), TypeError);
});

test('many engines created and closed', () => {
  for (let i = 0; i < 200; i++) {
    const engine = new mcpopt.Engine({ mcpServers: { a: { url: 'http://127.0.0.1:1/mcp' } } });
    assert.strictEqual(engine.describe().servers.http, 1);
    if (i % 2 === 0) engine.close(); // the rest are left to the garbage collector's finalizer
  }
});
