'use strict';
// coordinateOperation, coordinateMultiServerOperation and recoverTransactions from Node against
// real MCP servers over stdio that the engine starts and stops: FastMCP key-value servers
// (Tests/interop/kv_server.py) and two-phase-commit participants (Tests/interop/participant_server.py),
// run with the repository's .venv Python.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Engine, MCPOptError, Status } = require('..');

const repo = path.resolve(__dirname, '..', '..', '..');
const python = process.env.MCPOPT_PYTHON || path.join(repo, '.venv', 'bin', 'python');
const available = fs.existsSync(python);
const skip = !available && 'no .venv python';
const KV = path.join(repo, 'Tests', 'interop', 'kv_server.py');
const PARTICIPANT = path.join(repo, 'Tests', 'interop', 'participant_server.py');
const KVS = ['kv1', 'kv2', 'kv3'];

function kvConfig() {
  const mcpServers = {};
  for (const name of KVS) mcpServers[name] = { command: python, args: [KV, '--name', name], trustAnnotations: true };
  return { mcpServers };
}

function participantsConfig(state, log, names, { refusing = [], transactions = true } = {}) {
  const mcpServers = {};
  for (const name of names) {
    mcpServers[name] = { command: python, args: [PARTICIPANT, '--name', name, '--state', state, ...(refusing.includes(name) ? ['--vote-no'] : [])] };
  }
  return { mcpServers, coordination: transactions ? { enableDistributedTransactions: true, transactionLog: log } : {} };
}

const text = (entry) => entry.result.content[0].text;
const answer = (entry) => entry.result.structuredContent || JSON.parse(entry.result.content[0].text);

function store(state, name) {
  const file = path.join(state, `${name}.json`);
  return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'mcpopt-node-coord-'));
}

const rejectsWith = (status, pattern) => (err) => {
  assert.ok(err instanceof MCPOptError, err);
  assert.strictEqual(err.status, status, err.message);
  if (pattern) assert.match(err.message, pattern);
  return true;
};

test('a fan-out reaches every server; policies decide; bad requests are refused', { skip, timeout: 120_000 }, async () => {
  const engine = new Engine(kvConfig());
  try {
    await engine.start();
    const r = await engine.coordinateOperation('whoami', KVS, undefined, { timeoutMs: 10_000 });
    assert.strictEqual(r.mode, 'fanout');
    assert.strictEqual(r.success, true, JSON.stringify(r));
    assert.strictEqual(r.size, 3);
    assert.strictEqual(r.succeeded, 3);
    assert.deepStrictEqual(Object.keys(r.results).sort(), KVS);
    for (const name of KVS) {
      assert.strictEqual(r.results[name].status, 'success');
      assert.strictEqual(text(r.results[name]), name);
    }

    const put = await engine.coordinateOperation('put', KVS, { key: 'k', value: 'v' });
    assert.strictEqual(put.success, true, JSON.stringify(put));
    const got = await engine.coordinateOperation('get', KVS, { key: 'k' });
    assert.deepStrictEqual(Object.values(got.results).map(text), ['v', 'v', 'v']);

    // One server given a tool it does not have.
    const calls = [{ server: 'kv1', tool: 'whoami' }, { server: 'kv2', tool: 'whoami' }, { server: 'kv3', tool: 'no_such_tool' }];
    const all = await engine.coordinateMultiServerOperation('read', calls, { policy: 'all' });
    assert.strictEqual(all.success, false);
    assert.strictEqual(all.results.kv3.status, 'error');
    const quorum = await engine.coordinateMultiServerOperation('read', calls, { policy: 'quorum', quorum: 2 });
    assert.strictEqual(quorum.success, true, JSON.stringify(quorum));
    assert.strictEqual(quorum.policy, 'quorum(2)');
    const first = await engine.coordinateMultiServerOperation('read', calls, { policy: 'first', concurrency: 1 });
    assert.strictEqual(first.success, true);
    assert.strictEqual(first.succeeded, 1);

    await assert.rejects(engine.coordinateOperation('whoami', ['kv1', 'nope']), rejectsWith(Status.INVALID_ARGUMENT, /nope/));
    await assert.rejects(engine.coordinateOperation('whoami', ['kv1'], null, { policy: 'quorum' }), rejectsWith(Status.INVALID_ARGUMENT, /quorum/));
    await assert.rejects(engine.coordinateOperation('whoami', ['kv1'], null, { colour: 'red' }), rejectsWith(Status.INVALID_ARGUMENT, /colour/));
    await assert.rejects(engine.coordinateMultiServerOperation('read', [{ tool: 'whoami' }]), rejectsWith(Status.INVALID_ARGUMENT));
    await assert.rejects(engine.coordinateOperation('whoami', 'kv1'), TypeError);
    await assert.rejects(engine.coordinateOperation('whoami', ['kv1'], null, { servers: ['kv2'] }), TypeError);
    // Transactions are off in this engine.
    await assert.rejects(engine.coordinateOperation('set', ['kv1'], { key: 'k', value: 1 }, { mode: 'transaction' }),
      rejectsWith(Status.UNSUPPORTED, /enableDistributedTransactions/));
    await assert.rejects(engine.recoverTransactions(), rejectsWith(Status.UNSUPPORTED));
  } finally {
    engine.close();
  }
  await assert.rejects(engine.coordinateOperation('whoami', KVS), rejectsWith(Status.INVALID_HANDLE));
  await assert.rejects(engine.recoverTransactions(), rejectsWith(Status.INVALID_HANDLE));
});

test('a two-phase commit across three participants, and an abort', { skip, timeout: 120_000 }, async () => {
  const dir = tempDir();
  const state = path.join(dir, 'state');
  const names = ['p1', 'p2', 'p3'];
  const engine = new Engine(participantsConfig(state, path.join(dir, 'tx.db'), [...names, 'refuser'], { refusing: ['refuser'] }));
  try {
    // Several at once: the addon runs each on a worker thread.
    const [r, reads] = await Promise.all([
      engine.coordinateOperation('set-color', names, { key: 'color', value: 'blue' },
        { mode: 'transaction', transactionId: 'node-tx-1', timeoutMs: 20_000 }),
      engine.coordinateOperation('kv_get', names, { key: 'other' }),
    ]);
    assert.strictEqual(r.success, true, JSON.stringify(r));
    assert.strictEqual(r.committed, true);
    assert.strictEqual(r.transactionId, 'node-tx-1');
    assert.deepStrictEqual(r.unacknowledged, []);
    assert.strictEqual(reads.success, true);
    for (const name of names) assert.deepStrictEqual(store(state, name), { color: 'blue' }, name);
    const after = await engine.coordinateOperation('kv_get', names, { key: 'color' });
    for (const name of names) assert.deepStrictEqual(answer(after.results[name]), { value: 'blue' });

    const no = await engine.coordinateMultiServerOperation('set-size',
      ['p1', 'refuser'].map((server) => ({ server, arguments: { key: 'size', value: 3 } })), { mode: 'transaction' });
    assert.strictEqual(no.success, false);
    assert.strictEqual(no.committed, false);
    assert.match(no.reason, /refuse/);
    assert.ok(!('size' in store(state, 'p1')) && !('size' in store(state, 'refuser')));

    assert.deepStrictEqual(await engine.recoverTransactions(), []);
  } finally {
    engine.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
