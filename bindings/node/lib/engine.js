'use strict';
const { EventEmitter } = require('node:events');
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

const EVENT_NAMES = new Set(['metricsUpdate', 'targetMet', 'routingOptimized', 'routingError', 'cacheHit', 'cacheMiss',
  'optimizationError', 'serverUp', 'serverDown', 'circuitOpened', 'circuitClosed', 'stateUpdated']);

/** Settles what an async native call resolved with: [status, text]. */
function settle([status, text]) {
  if (status === Status.OK) return text;
  const statusName = (Object.entries(Status).find(([, v]) => v === status) || ['INTERNAL'])[0].toLowerCase().replace(/_/g, ' ');
  throw new MCPOptError({ status, message: text, statusName, issues: [] });
}

/**
 * An mcpopt engine, created from a configuration object, JSON text or Buffer. It is an
 * EventEmitter: listen for 'cacheHit', 'cacheMiss', 'routingError', 'optimizationError',
 * 'serverUp', 'serverDown', 'circuitOpened', 'circuitClosed'... (each with a details object).
 */
class Engine extends EventEmitter {
  #handle;
  #subscription = null;
  #nextId = 0;

  constructor(config) {
    super();
    this.#handle = call(() => native.engineCreate(configText(config)));
    // The library is asked for events only once someone listens.
    this.on('newListener', (name) => {
      if (EVENT_NAMES.has(name) && this.#subscription === null && this.#handle !== null) {
        this.#subscription = call(() => native.subscribeEvents(this.#handle, (event, data) => this.emit(event, JSON.parse(data))));
      }
    });
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

  /** Starts a warm session to every configured server and lists what each offers. */
  async start() {
    settle(await native.engineStart(this.#live()));
  }

  /** Stops the servers (stdio servers are asked to exit). close() does it too. */
  async stop() {
    settle(await native.engineStop(this.#live()));
  }

  /**
   * Serves one JSON-RPC request (an object, JSON text or Buffer) through the whole pipeline.
   * Options: {agent, partition, servers, bypassCache, timeoutMs, session}. Resolves to {response,
   * success, server, cacheSource, attempts, executionTimeMs, error}; rejects with an
   * MCPOptError when the request is not a JSON-RPC request.
   */
  async optimizeRequest(request, options) {
    const text = typeof request === 'string' || Buffer.isBuffer(request) ? request : JSON.stringify(request);
    const opts = options && Object.keys(options).length ? JSON.stringify(options) : null;
    return JSON.parse(settle(await native.optimizeRequest(this.#live(), text, opts)));
  }

  /** Shorthand: optimizeRequest of a tools/call. */
  async callTool(name, args = {}, options) {
    this.#nextId += 1;
    return this.optimizeRequest({ jsonrpc: '2.0', id: this.#nextId, method: 'tools/call', params: { name, arguments: args } }, options);
  }

  /** Routing, cache, system and coordination figures (docs/METRICS.md). */
  getOptimizationMetrics() {
    const handle = this.#live();
    return JSON.parse(call(() => native.metrics(handle)));
  }

  /** The metrics in the Prometheus text format. */
  prometheusMetrics() {
    const handle = this.#live();
    return call(() => native.metricsPrometheus(handle));
  }

  /** Probes every server: {status: 'healthy' | 'degraded' | 'unhealthy', servers: [...]}. */
  async performHealthCheck() {
    return JSON.parse(settle(await native.healthCheck(this.#live())));
  }

  /** Releases the engine (stopping its servers); closing twice is harmless. */
  close() {
    const handle = this.#handle;
    if (handle !== null && this.#subscription !== null) {
      call(() => native.unsubscribeEvents(handle, this.#subscription));
      this.#subscription = null;
    }
    this.#handle = null;
    if (handle !== null) call(() => native.engineDestroy(handle));
  }

  [Symbol.dispose]() { this.close(); }
}

module.exports = { Engine, validateConfig };
