'use strict';

const Status = Object.freeze({
  OK: 0,
  INVALID_ARGUMENT: 1,
  INVALID_UTF8: 2,
  MALFORMED_JSON: 3,
  INVALID_CONFIG: 4,
  INVALID_HANDLE: 5,
  NOT_FOUND: 6,
  TOO_LARGE: 7,
  UNSUPPORTED: 8,
  BUFFER_TOO_SMALL: 9,
  CONFLICT: 10,
  UNAVAILABLE: 11,
  INTERNAL: 99,
});

/** An error from libmcpopt: `status` (a Status code), `statusName`, `issues` [{path, message}]. */
class MCPOptError extends Error {
  constructor(native) {
    super(native.message);
    this.name = 'MCPOptError';
    this.status = native.status;
    this.statusName = native.statusName;
    this.issues = native.issues || [];
  }
}

const CONFIG_STATUSES = new Set([Status.INVALID_UTF8, Status.MALFORMED_JSON, Status.INVALID_CONFIG, Status.TOO_LARGE]);

/** The configuration is not valid JSON, or not a valid configuration. */
class ConfigError extends MCPOptError {
  constructor(native) {
    super(native);
    this.name = 'ConfigError';
  }
}

/** Runs a native call, turning its errors into MCPOptError / ConfigError. */
function call(fn) {
  try {
    return fn();
  } catch (err) {
    if (err && typeof err.status === 'number') {
      throw CONFIG_STATUSES.has(err.status) ? new ConfigError(err) : new MCPOptError(err);
    }
    throw err;
  }
}

module.exports = { Status, MCPOptError, ConfigError, call };
