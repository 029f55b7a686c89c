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

// What coordinateOperation and coordinateMultiServerOperation take as arguments, not options.
const COORDINATION_ARGUMENTS = new Set(['operation', 'servers', 'calls', 'data']);

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

  /**
   * Runs `operation` on every one of `servers` with the same arguments (`data`, default {}).
   * Options: {mode: 'fanout' (default) | 'transaction', policy: 'all' (default) | 'quorum' |
   * 'first', quorum, concurrency, timeoutMs, transactionId, agent}. A fan-out calls the tool
   * `operation` on each server; a transaction is a two-phase commit (needs
   * coordination.enableDistributedTransactions) whose participants get `data` as their prepare
   * payload. Resolves to {operation, mode, success, durationMs} plus, for a fan-out, {policy,
   * size, succeeded, failed, results: {server: {status, success, latencyMs, result, error}}}, or
   * for a transaction {transactionId, committed, reason, unacknowledged}; a failed call or an
   * aborted transaction resolves with success false. Rejects with an MCPOptError: status
   * INVALID_ARGUMENT for an unknown server or a bad option, UNSUPPORTED when transactions are off.
   */
  async coordinateOperation(operation, servers, data, options) {
    if (!Array.isArray(servers)) throw new TypeError('servers must be an array of server names');
    const request = { operation, servers };
    if (data !== undefined && data !== null) request.data = data;
    return this.#coordinate(request, options);
  }

  /**
   * Like coordinateOperation, with a call per server: `calls` is [{server, tool (default:
   * operation), arguments (default {})}]. In transaction mode the tools are ignored and each
   * call's arguments are that participant's prepare payload.
   */
  async coordinateMultiServerOperation(operation, calls, options) {
    if (!Array.isArray(calls)) throw new TypeError('calls must be an array of {server, tool, arguments}');
    return this.#coordinate({ operation, calls }, options);
  }

  async #coordinate(request, options) {
    if (options !== undefined && options !== null && typeof options !== 'object') throw new TypeError('options must be an object');
    // Options the library does not know are passed on: it rejects them (INVALID_ARGUMENT).
    const fields = { ...request };
    for (const [key, value] of Object.entries(options || {})) {
      if (COORDINATION_ARGUMENTS.has(key)) throw new TypeError(`'${key}' is an argument, not an option`);
      if (value !== undefined && value !== null) fields[key] = value;
    }
    return JSON.parse(settle(await native.coordinateOperation(this.#live(), JSON.stringify(fields))));
  }

  /**
   * Finishes the transactions the decision log left unfinished (after a crash of a process that
   * used the same log): undecided ones abort, decided ones are sent their decision again.
   * start() does this by itself when transactions are enabled. Resolves to the recovered
   * transactions [{transactionId, committed, unacknowledged}]; rejects with status UNSUPPORTED
   * when transactions are off.
   */
  async recoverTransactions() {
    return JSON.parse(settle(await native.recoverTransactions(this.#live()))).recovered;
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
