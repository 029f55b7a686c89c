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
