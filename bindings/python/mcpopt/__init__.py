"""mcpopt: an MCP optimization engine. Python binding of libmcpopt (ctypes)."""
from __future__ import annotations

from . import _native
from .cache import Cache
from .engine import Engine, validate_config
from .routing import Router
from .errors import ConfigError, InvalidHandleError, Issue, MCPOptError
from ._native import LibraryNotFound
from .state import State, Versioned, Watch

__all__ = ["Cache", "Engine", "Router", "validate_config", "ConfigError", "InvalidHandleError", "Issue", "MCPOptError",
           "LibraryNotFound", "State", "Versioned", "Watch", "version", "ABI_VERSION"]

ABI_VERSION = _native.ABI_VERSION


def version() -> str:
    """The loaded library's version."""
    return _native.lib().mcpopt_version().decode()
