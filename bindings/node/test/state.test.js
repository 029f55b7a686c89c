'use strict';
const test = require('node:test');
const assert = require('node:assert');
const mcpopt = require('..');

test('put, get, delete and versions', () => {
  const engine = new mcpopt.Engine({});
  try {
    const v1 = engine.state.put('cfg/limit', '10');
    const v2 = engine.state.put('cfg/limit', Buffer.from('20'));
    assert.notStrictEqual(v1, v2);
    assert.match(v2, /@/);
    const got = engine.state.get('cfg/limit');
    assert.strictEqual(got.value.toString(), '20');
    assert.strictEqual(got.version, v2);
    engine.state.put('bin', Buffer.from([0, 255, 10]));
    assert.deepStrictEqual([...engine.state.get('bin').value], [0, 255, 10]);
    assert.strictEqual(engine.state.delete('cfg/limit'), true);
    assert.strictEqual(engine.state.get('cfg/limit'), null);
    assert.strictEqual(engine.state.delete('cfg/limit'), false);
  } finally {
    engine.close();
  }
});

test('watch delivers changes under the prefix, asynchronously, until stopped', async () => {
  const engine = new mcpopt.Engine({});
  const seen = [];
  const stop = engine.state.watch('cfg/', (key, value, version, deleted) => seen.push([key, value.toString(), deleted]));
  engine.state.put('cfg/a', '1');
  engine.state.put('other', 'x');
  engine.state.delete('cfg/a');
  assert.deepStrictEqual(seen, [], 'listeners run after the call returns');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepStrictEqual(seen, [['cfg/a', '1', false], ['cfg/a', '', true]]);
  stop();
  stop();
  engine.state.put('cfg/b', '2');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.strictEqual(seen.length, 2);
  engine.close();
});

test('bad arguments and closed engines', () => {
  const engine = new mcpopt.Engine({});
  assert.throws(() => engine.state.put('', 'v'), (err) => err.status === mcpopt.Status.INVALID_ARGUMENT);
  assert.throws(() => engine.state.put(Buffer.from([0xff]), 'v'), (err) => err.status === mcpopt.Status.INVALID_UTF8);
  assert.throws(() => engine.state.put('k', 42), TypeError);
  assert.throws(() => engine.state.watch('p', 'not a function'), TypeError);
  engine.close();
  assert.throws(() => engine.state.put('k', 'v'), (err) => err.status === mcpopt.Status.INVALID_HANDLE);
});
