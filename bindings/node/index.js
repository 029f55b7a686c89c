'use strict';
// mcpopt for Node: an N-API binding of libmcpopt.
const native = require('./lib/native');
const { Engine, validateConfig } = require('./lib/engine');
const { Status, MCPOptError, ConfigError } = require('./lib/errors');

const ABI_VERSION = 1;
if (native.abiVersion() !== ABI_VERSION) {
  throw new Error(`libmcpopt ABI version ${native.abiVersion()} does not match this binding (${ABI_VERSION})`);
}

module.exports = {
  Engine,
  validateConfig,
  Status,
  MCPOptError,
  ConfigError,
  ABI_VERSION,
  version: () => native.version(),
  statusString: (status) => native.statusString(status),
};
