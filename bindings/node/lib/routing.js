'use strict';
const native = require('./native');
const { call } = require('./errors');

/** `engine.router`: which server serves each request. Decisions are plain objects. */
class Router {
  #engine;

  constructor(engine) { this.#engine = engine; }

  /**
   * Chooses a server. `request`: a tool name, a tools/call request, or {tool, requirements, agent}.
   * `requirements`: {maxResponseTime ('500ms' or ms), minSuccessRate, strategy, affinityKey, allowedServers}.
   */
  route(request, requirements, options = {}) {
    let body;
    if (typeof request === 'string') body = { tool: request };
    else if (request && typeof request === 'object') body = { ...request };
    else throw new TypeError('request must be a tool name or an object');
    if (requirements !== undefined && requirements !== null) body.requirements = requirements;
    if (options.agent !== undefined) body.agent = options.agent;
    if (options.maxFallbacks !== undefined) body.maxFallbacks = options.maxFallbacks;
    return JSON.parse(call(() => native.route(this.#engine.handle(), JSON.stringify(body))));
  }

  /** Adds or replaces a server: {id, transport, group, weight, tags, tools, resources, prompts, health}. */
  registerServer(server) {
    call(() => native.routeRegisterServer(this.#engine.handle(), JSON.stringify(server)));
  }

  /** Replaces a server's tools: a tools/list result or an array of tools. */
  setTools(server, tools) {
    call(() => native.routeSetTools(this.#engine.handle(), server, JSON.stringify(tools)));
  }

  /** Removes a server; false when it was not registered. */
  removeServer(server) {
    return call(() => native.routeRemoveServer(this.#engine.handle(), server));
  }

  /** Records an outcome: latency in milliseconds. */
  record(server, tool, latencyMs, success = true) {
    if (typeof latencyMs !== 'number' || !(latencyMs >= 0)) throw new TypeError(`latencyMs must be a non-negative number, not ${latencyMs}`);
    call(() => native.routeRecord(this.#engine.handle(), server, tool, Math.round(latencyMs * 1000), !!success));
  }

  stats() {
    return JSON.parse(call(() => native.routeStats(this.#engine.handle())));
  }
}

module.exports = { Router };
