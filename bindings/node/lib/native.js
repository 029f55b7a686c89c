'use strict';
// Loads the addon: MCPOPT_NODE_ADDON (a path), then mcpopt.node beside the package, then the
// CMake build folder of a source checkout.
const path = require('node:path');
const fs = require('node:fs');

function load() {
  const candidates = [
    process.env.MCPOPT_NODE_ADDON,
    path.join(__dirname, '..', 'mcpopt.node'),
    path.join(__dirname, '..', '..', '..', 'build', 'bindings', 'node', 'mcpopt.node'),
  ].filter(Boolean);
  const tried = [];
  for (const candidate of candidates) {
    if (!fs.existsSync(candidate)) { tried.push(`${candidate}: not found`); continue; }
    return require(candidate);
  }
  throw new Error(`cannot find the mcpopt addon; set MCPOPT_NODE_ADDON to its path. Tried:\n  ${tried.join('\n  ')}`);
}

module.exports = load();
