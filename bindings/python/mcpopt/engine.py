"""The engine: created from a configuration (a dict, or JSON text)."""
from __future__ import annotations

import ctypes
import json
import threading
from typing import Any, List, Mapping, Union

from . import _native
from .errors import ConfigError, InvalidHandleError, Issue, check
from .cache import Cache
from .routing import Router
from .state import State

Config = Union[Mapping[str, Any], str, bytes]


def _config_bytes(config: Config) -> bytes:
    if isinstance(config, bytes):
        return config
    if isinstance(config, str):
        return config.encode("utf-8", "surrogatepass")
    if isinstance(config, Mapping):
        return json.dumps(config).encode("utf-8")
    raise TypeError(f"config must be a mapping, str or bytes, not {type(config).__name__}")


def validate_config(config: Config) -> List[Issue]:
    """Every problem in `config` (empty when valid). Malformed JSON is one issue at path "$"."""
    data = _config_bytes(config)
    try:
        check(_native.lib().mcpopt_config_validate(data, len(data)))
    except ConfigError as exc:
        return exc.issues
    return []


class Engine:
    """An mcpopt engine. Use it as a context manager, or call close(); closing twice is harmless.

    Raises ConfigError (with .issues naming each bad field) when the configuration is invalid.
    """

    def __init__(self, config: Config):
        data = _config_bytes(config)
        handle = ctypes.c_void_p()
        check(_native.lib().mcpopt_engine_create(data, len(data), ctypes.byref(handle)))
        self._handle = handle
        self._lock = threading.Lock()
        self.state = State(self)
        """Versioned shared state: put/get/delete/watch."""
        self.cache = Cache(self)
        """The in-process cache: set/get/delete/invalidate/invalidate_group/stats/clear."""
        self.router = Router(self)
        """Routing: route/register_server/set_tools/remove_server/record/stats."""

    def route(self, request, requirements=None, agent=None):
        """Shorthand for engine.router.route (the brief's `route(request, requirements)`)."""
        return self.router.route(request, requirements, agent)

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _live(self) -> ctypes.c_void_p:
        handle = self._handle
        if handle is None:
            raise InvalidHandleError(5, "the engine is closed")
        return handle

    def describe(self) -> dict:
        """Version, allocator, servers and the effective configuration (secrets redacted)."""
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_engine_describe(self._live(), ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))

    def close(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            check(_native.lib().mcpopt_engine_destroy(handle))

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return "<mcpopt.Engine closed>" if self.closed else "<mcpopt.Engine>"
