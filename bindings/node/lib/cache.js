'use strict';
const native = require('./native');
const { call } = require('./errors');

function optionsOf(options) {
  if (options === undefined || options === null) return [0, null, null];
  if (typeof options !== 'object') throw new TypeError('options must be an object {ttl, coherenceGroup, tags}');
  const { ttl, coherenceGroup, tags } = options;
  let ttlMs = 0;
  if (ttl !== undefined && ttl !== null) {
    if (typeof ttl !== 'number' || !(ttl > 0)) throw new TypeError(`ttl must be a positive number of milliseconds, not ${ttl}`);
    ttlMs = Math.max(1, Math.round(ttl));
  }
  if (tags !== undefined && tags !== null && !Array.isArray(tags)) throw new TypeError('tags must be an array of strings');
  return [ttlMs, coherenceGroup ?? null, tags ?? null];
}

// One scratch buffer per Node thread (module instances are per thread): reads land here and
// are copied out with Buffer.from, which takes small buffers from Node's pool.
let scratch = Buffer.allocUnsafeSlow(64 * 1024);

/** `engine.cache`: the in-process cache. Keys and values are strings (UTF-8) or Buffers. */
class Cache {
  #engine;

  constructor(engine) { this.#engine = engine; }

  /** Stores value under key. options: {ttl (ms), coherenceGroup, tags}. Throws MCPOptError (TOO_LARGE...). */
  set(key, value, options) {
    const [ttlMs, group, tags] = optionsOf(options);
    call(() => native.cacheSet(this.#engine.handle(), key, value, ttlMs, group, tags));
  }

  /** The value as a Buffer, or null when not cached. */
  get(key) {
    const handle = this.#engine.handle();
    let length = call(() => native.cacheGetInto(handle, key, scratch));
    // Too small: grow and read again (the value may have been replaced meanwhile; values are
    // at most 1 MiB, so this ends quickly).
    for (let tries = 0; length < -1 && tries < 8; tries++) {
      scratch = Buffer.allocUnsafeSlow(-length - 2);
      length = call(() => native.cacheGetInto(handle, key, scratch));
    }
    if (length < 0) return null;
    return Buffer.from(scratch.subarray(0, length));
  }

  /** Removes key; false when it was not cached. */
  delete(key) {
    return call(() => native.cacheDelete(this.#engine.handle(), key));
  }

  /** Removes every key matching a glob ("Read:/src/*"); returns how many went. */
  invalidate(pattern) {
    return call(() => native.cacheInvalidate(this.#engine.handle(), pattern));
  }

  /** Removes every item of a coherence group; returns how many went. */
  invalidateGroup(group) {
    return call(() => native.cacheInvalidateGroup(this.#engine.handle(), group));
  }

  /** Removes every item carrying tag; returns how many went. */
  invalidateTag(tag) {
    return call(() => native.cacheInvalidateTag(this.#engine.handle(), tag));
  }

  clear() {
    call(() => native.cacheClear(this.#engine.handle()));
  }

  /** {hits, misses, hitRate, items, evictions, expirations, invalidations, classes, ...} */
  stats() {
    return JSON.parse(call(() => native.cacheStats(this.#engine.handle())));
  }

  /** The hottest keys [{key | keyHex, accessCount}], hottest first, for warming. */
  hotKeys(limit = 1000) {
    return JSON.parse(call(() => native.cacheHotKeys(this.#engine.handle(), limit)));
  }
}

module.exports = { Cache };
