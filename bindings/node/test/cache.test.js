'use strict';
const test = require('node:test');
const assert = require('node:assert');
const mcpopt = require('..');

function withEngine(fn) {
  const engine = new mcpopt.Engine({ caching: { memoryCacheSize: '8MiB', coherenceTimeout: '50ms' } });
  try {
    return fn(engine);
  } finally {
    engine.close();
  }
}

test('set, get, delete', () => withEngine(({ cache }) => {
  assert.strictEqual(cache.get('k'), null);
  cache.set('k', 'value');
  assert.strictEqual(cache.get('k').toString(), 'value');
  cache.set(Buffer.from([0, 255]), Buffer.from([1, 2, 3]));
  assert.deepStrictEqual([...cache.get(Buffer.from([0, 255]))], [1, 2, 3]);
  const big = Buffer.alloc(200000, 7); // more than the reusable read buffer
  cache.set('big', big);
  assert.ok(cache.get('big').equals(big));
  cache.set('empty', '');
  assert.strictEqual(cache.get('empty').length, 0);
  assert.strictEqual(cache.delete('k'), true);
  assert.strictEqual(cache.delete('k'), false);
}));

test('ttl, groups, tags and every invalidation', async () => {
  const engine = new mcpopt.Engine({ caching: { memoryCacheSize: '8MiB', coherenceTimeout: '50ms' } });
  try {
    const { cache } = engine;
    cache.set('Read:/src/a', '1', { coherenceGroup: 'fs', tags: ['src'] });
    cache.set('Read:/src/b', '2', { tags: ['src', 'lib'] });
    cache.set('Read:/docs/c', '3', { coherenceGroup: 'fs' });
    cache.set('other', '4');
    assert.strictEqual(cache.invalidateTag('lib'), 1);
    assert.strictEqual(cache.invalidate('Read:/src/*'), 1);
    assert.strictEqual(cache.invalidateGroup('fs'), 1);
    assert.strictEqual(cache.get('other').toString(), '4');
    cache.set('short', 's', { ttl: 30 });
    cache.set('grouped', 'g', { ttl: 60000, coherenceGroup: 'g' });
    cache.set('long', 'l', { ttl: 60000 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.strictEqual(cache.get('short'), null);
    assert.strictEqual(cache.get('grouped'), null);
    assert.strictEqual(cache.get('long').toString(), 'l');
    cache.clear();
    assert.strictEqual(cache.get('long'), null);
  } finally {
    engine.close();
  }
});

test('stats and hot keys', () => withEngine(({ cache }) => {
  cache.set('hot', 'h');
  cache.set('cold', 'c');
  for (let i = 0; i < 3; i++) cache.get('hot');
  cache.get('missing');
  const stats = cache.stats();
  assert.deepStrictEqual([stats.hits, stats.misses, stats.items], [3, 1, 2]);
  assert.ok(stats.pageBytes <= stats.memoryBudget);
  assert.deepStrictEqual(cache.hotKeys(10).map((k) => k.key), ['hot']);
}));

test('bad input throws clear errors and loses nothing', () => withEngine(({ cache }) => {
  cache.set('keep', 'me');
  assert.throws(() => cache.set('', 'v'), (e) => e.status === mcpopt.Status.INVALID_ARGUMENT && /key is empty/.test(e.message));
  assert.throws(() => cache.set('huge', Buffer.alloc(2 << 20)), (e) => e.status === mcpopt.Status.TOO_LARGE && /too large to cache/.test(e.message));
  assert.throws(() => cache.set('k', 'v', { ttl: -1 }), TypeError);
  assert.throws(() => cache.set('k', 'v', { tags: 'src' }), TypeError);
  assert.throws(() => cache.set('k', 'v', { tags: [1] }), TypeError);
  assert.throws(() => cache.set('k', 'v', { coherenceGroup: 5 }), TypeError);
  assert.throws(() => cache.set(42, 'v'), TypeError);
  assert.throws(() => cache.invalidate(''), (e) => e.status === mcpopt.Status.INVALID_ARGUMENT);
  assert.strictEqual(cache.get('keep').toString(), 'me');
}));

test('a closed engine is refused', () => {
  const engine = new mcpopt.Engine({});
  const { cache } = engine;
  engine.close();
  assert.throws(() => cache.get('k'));
});
