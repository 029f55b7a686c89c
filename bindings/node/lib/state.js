'use strict';
const native = require('./native');
const { call } = require('./errors');

/** `engine.state`: versioned shared state. Listeners run asynchronously on the JS thread. */
class State {
  #engine;

  constructor(engine) { this.#engine = engine; }

  /** Stores a value (string or Buffer); returns its version stamp. */
  put(key, value) {
    return call(() => native.statePut(this.#engine.handle(), key, value));
  }

  /** {value: Buffer, version} or null. */
  get(key) {
    return call(() => native.stateGet(this.#engine.handle(), key));
  }

  /**
   * Stores a value only if the key is still at `expectedVersion` (a stamp from get() or a
   * previous write; null or undefined: the key must have no value); returns the new version
   * stamp. Throws MCPOptError with status CONFLICT (nothing written) when the key is at another
   * version: read it again and retry. Under "strong" consistency it is one Redis round trip
   * (linearizable; it blocks, and throws UNAVAILABLE when Redis is down).
   */
  compareAndSet(key, value, expectedVersion) {
    return call(() => native.stateCompareAndSet(this.#engine.handle(), key, value, expectedVersion));
  }

  /** Deletes a key; false when it had no value. */
  delete(key) {
    return call(() => native.stateDelete(this.#engine.handle(), key));
  }

  /** Calls listener(key, value, version, deleted) for every change under prefix; returns a stop function. */
  watch(prefix, listener) {
    const handle = this.#engine.handle();
    const watch = call(() => native.stateWatch(handle, prefix, listener));
    let stopped = false;
    return () => {
      if (stopped || this.#engine.closed) return;
      stopped = true;
      call(() => native.stateUnwatch(handle, watch));
    };
  }
}

module.exports = { State };
