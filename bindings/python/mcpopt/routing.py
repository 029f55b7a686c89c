"""The engine's router: which server serves each request."""
from __future__ import annotations

import ctypes
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from . import _native
from .errors import NOT_FOUND, check


def _text(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} is str, not {type(value).__name__}")
    return value.encode("utf-8", "surrogatepass")


def _json(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else json.dumps(value).encode("utf-8")


class Router:
    """`engine.router`. Decisions are dicts: outcome, server, fallbacks, confidence,
    predictedLatencyMs, strategy, probe, reasoning, decisionTimeNs."""

    def __init__(self, engine):
        self._engine = engine

    def route(self, request: Union[str, Mapping[str, Any]], requirements: Optional[Mapping[str, Any]] = None,
              agent: Optional[str] = None, max_fallbacks: Optional[int] = None) -> Dict[str, Any]:
        """Chooses a server. `request` is a tool name, a tools/call request (dict), or a full
        routing request ({"tool": ..., "requirements": ...}). `requirements`: maxResponseTime
        ("500ms" or ms), minSuccessRate (0..1), strategy, affinityKey, allowedServers."""
        if isinstance(request, str):
            body: Dict[str, Any] = {"tool": request}
        elif isinstance(request, Mapping):
            body = dict(request)
        else:
            raise TypeError(f"request is a tool name or a dict, not {type(request).__name__}")
        if requirements is not None:
            body["requirements"] = dict(requirements)
        if agent is not None:
            body["agent"] = agent
        if max_fallbacks is not None:
            body["maxFallbacks"] = max_fallbacks
        data = _json(body)
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_route(self._engine._live(), data, len(data), ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))

    def register_server(self, server: Mapping[str, Any]) -> None:
        """Adds or replaces a server: {"id", "transport", "group", "weight", "tags", "tools",
        "resources", "prompts", "health"}."""
        data = _json(server)
        check(_native.lib().mcpopt_route_register_server(self._engine._live(), data, len(data)))

    def set_tools(self, server: str, tools: Union[Iterable[Mapping[str, Any]], Mapping[str, Any]]) -> None:
        """Replaces a server's tools: a tools/list result or a list of tool dicts."""
        s = _text(server, "server")
        data = _json(tools if isinstance(tools, Mapping) else list(tools))
        check(_native.lib().mcpopt_route_set_tools(self._engine._live(), s, len(s), data, len(data)))

    def remove_server(self, server: str) -> bool:
        """Removes a server; False when it was not registered."""
        s = _text(server, "server")
        status = _native.lib().mcpopt_route_remove_server(self._engine._live(), s, len(s))
        if status == NOT_FOUND:
            return False
        check(status)
        return True

    def record(self, server: str, tool: str, latency: float, success: bool = True) -> None:
        """Records an outcome: `latency` in seconds."""
        if latency < 0:
            raise ValueError(f"latency must not be negative, not {latency}")
        s, t = _text(server, "server"), _text(tool, "tool")
        check(_native.lib().mcpopt_route_record(self._engine._live(), s, len(s), t, len(t), int(latency * 1e6), 1 if success else 0))

    def stats(self) -> Dict[str, Any]:
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_route_stats(self._engine._live(), ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))
