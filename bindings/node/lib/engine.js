'use strict';
const native = require('./native');
const { call, ConfigError, MCPOptError, Status } = require('./errors');
const { State } = require('./state');
const { Cache } = require('./cache');
const { Router } = require('./routing');

function configText(config) {
  if (typeof config === 'string' || Buffer.isBuffer(config)) return config;
  if (config !== null && typeof config === 'object') return JSON.stringify(config);
  throw new TypeError(`config must be an object, a string or a Buffer, not ${config === null ? 'null' : typeof config}`);
}

/** Every problem in `config` as [{path, message}] (empty when valid). */
function validateConfig(config) {
  try {
    call(() => native.configValidate(configText(config)));
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
}

/** An mcpopt engine, created from a configuration object, JSON text or Buffer. */
class Engine {
  #handle;

  constructor(config) {
    this.#handle = call(() => native.engineCreate(configText(config)));
    /** Versioned shared state: put/get/delete/watch. */
    this.state = new State(this);
    /** The in-process cache: set/get/delete/invalidate/invalidateGroup/stats/clear. */
    this.cache = new Cache(this);
    /** Routing: route/registerServer/setTools/removeServer/record/stats. */
    this.router = new Router(this);
  }

  get closed() { return this.#handle === null; }

  /** The native handle (for the binding's own modules). */
  handle() { return this.#live(); }

  #live() {
    if (this.#handle === null) {
      throw new MCPOptError({ message: 'the engine is closed', status: Status.INVALID_HANDLE, statusName: 'invalid handle' });
    }
    return this.#handle;
  }

  /** Version, allocator, servers and the effective configuration (secrets redacted). */
  /** Shorthand for engine.router.route (the brief's route(request, requirements)). */
  route(request, requirements, options) {
    return this.router.route(request, requirements, options);
  }

  describe() {
    const handle = this.#live();
    return JSON.parse(call(() => native.engineDescribe(handle)));
  }

  /** Releases the engine; closing twice is harmless. */
  close() {
    const handle = this.#handle;
    this.#handle = null;
    if (handle !== null) call(() => native.engineDestroy(handle));
  }

  [Symbol.dispose]() { this.close(); }
}

module.exports = { Engine, validateConfig };
