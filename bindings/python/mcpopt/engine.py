"""The engine: created from a configuration (a dict, or JSON text)."""
from __future__ import annotations

import ctypes
import json
import threading
from typing import Any, Callable, List, Mapping, Optional, Union

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
        self._callbacks: dict = {}
        self._next_id = 0

    def start(self) -> None:
        """Starts a warm session to every configured server and lists what each offers.
        optimize_request calls it when needed; calling it again does nothing."""
        check(_native.lib().mcpopt_engine_start(self._live()))

    def stop(self) -> None:
        """Stops the servers (stdio servers are asked to exit). close() does it too."""
        check(_native.lib().mcpopt_engine_stop(self._live()))

    def optimize_request(self, request: Union[Mapping[str, Any], str, bytes], *, agent: Optional[str] = None,
                         partition: Optional[str] = None, servers: Optional[List[str]] = None,
                         bypass_cache: bool = False, timeout_ms: Optional[float] = None, session: Optional[str] = None) -> dict:
        """Serves one JSON-RPC request through the whole pipeline (cache, merging, routing,
        failover). Returns {"response": the JSON-RPC response, "success", "server",
        "cacheSource", "attempts", "executionTimeMs", "error"}. Blocks (without holding the GIL);
        from asyncio, use `await asyncio.to_thread(engine.optimize_request, ...)`.

        Raises MalformedJSONError / InvalidArgumentError when `request` is not a JSON-RPC request."""
        data = _config_bytes(request)
        options: dict = {}
        if agent is not None:
            options["agent"] = agent
        if partition is not None:
            options["partition"] = partition
        if servers is not None:
            options["servers"] = list(servers)
        if bypass_cache:
            options["bypassCache"] = True
        if timeout_ms is not None:
            options["timeoutMs"] = timeout_ms
        if session is not None:
            options["session"] = session
        opts = json.dumps(options).encode() if options else None
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_optimize_request(self._live(), data, len(data), opts, len(opts) if opts else 0,
                                                     ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))

    def call_tool(self, name: str, arguments: Optional[Mapping[str, Any]] = None, **options: Any) -> dict:
        """Shorthand: optimize_request of a tools/call."""
        self._next_id += 1
        request = {"jsonrpc": "2.0", "id": self._next_id, "method": "tools/call", "params": {"name": name, "arguments": dict(arguments or {})}}
        return self.optimize_request(request, **options)

    def get_optimization_metrics(self) -> dict:
        """Routing, cache, system and coordination figures (docs/METRICS.md)."""
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_metrics(self._live(), ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))

    def prometheus_metrics(self) -> str:
        """The metrics in the Prometheus text format."""
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_metrics_prometheus(self._live(), ctypes.byref(out), ctypes.byref(length)))
        return _native.take_text(out, length)

    def perform_health_check(self) -> dict:
        """Probes every server: {"status": "healthy" | "degraded" | "unhealthy", "servers": [...]}."""
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_health_check(self._live(), ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))

    def coordinate_operation(self, operation: str, servers: List[str], data: Any = None, *, mode: str = "fanout",
                             policy: str = "all", quorum: Optional[int] = None, concurrency: Optional[int] = None,
                             timeout_ms: Optional[float] = None, transaction_id: Optional[str] = None,
                             agent: Optional[str] = None) -> dict:
        """Runs `operation` on every one of `servers` with the same arguments (`data`, default {})
        and blocks until it is decided (without holding the GIL; from asyncio, use
        `await asyncio.to_thread(engine.coordinate_operation, ...)`).

        mode "fanout" calls the tool `operation` on each server; policy "all", "quorum" (with
        `quorum`: n successes) or "first" decides success. mode "transaction" is a two-phase
        commit (needs coordination.enableDistributedTransactions): every server is a participant
        (tools tx_prepare/tx_commit/tx_abort) and `data` is its prepare payload. `timeout_ms` is
        per server (fan-out) or for the prepare phase (transaction).

        Returns {"operation", "mode", "success", "durationMs"} plus, for a fan-out, {"policy",
        "size", "succeeded", "failed", "results": {server: {"status", "success", "latencyMs",
        "result", "error"}}}, or for a transaction {"transactionId", "committed", "reason",
        "unacknowledged"}. A failed call or an aborted transaction is "success": False.

        Raises MCPOptError with status INVALID_ARGUMENT for an unknown server, a server named
        twice or a bad option, and UNSUPPORTED for a transaction when transactions are off."""
        if isinstance(servers, (str, bytes)):
            raise TypeError("servers must be a list of server names, not a single string")
        request: dict = {"operation": operation, "servers": list(servers)}
        if data is not None:
            request["data"] = data
        return self._coordinate(request, mode, policy, quorum, concurrency, timeout_ms, transaction_id, agent)

    def coordinate_multi_server_operation(self, operation: str, calls: List[Mapping[str, Any]], *, mode: str = "fanout",
                                          policy: str = "all", quorum: Optional[int] = None,
                                          concurrency: Optional[int] = None, timeout_ms: Optional[float] = None,
                                          transaction_id: Optional[str] = None, agent: Optional[str] = None) -> dict:
        """Like coordinate_operation, with a call per server: `calls` is a list of {"server",
        "tool" (default: operation), "arguments" (default {})}. In transaction mode the tools are
        ignored and each call's arguments are that participant's prepare payload."""
        if isinstance(calls, Mapping) or isinstance(calls, (str, bytes)):
            raise TypeError("calls must be a list of {'server', 'tool', 'arguments'} mappings")
        request: dict = {"operation": operation, "calls": [dict(call) for call in calls]}
        return self._coordinate(request, mode, policy, quorum, concurrency, timeout_ms, transaction_id, agent)

    def _coordinate(self, request: dict, mode: Optional[str], policy: Optional[str], quorum: Optional[int],
                    concurrency: Optional[int], timeout_ms: Optional[float], transaction_id: Optional[str],
                    agent: Optional[str]) -> dict:
        for key, value in (("mode", mode), ("policy", policy), ("quorum", quorum), ("concurrency", concurrency),
                           ("timeoutMs", timeout_ms), ("transactionId", transaction_id), ("agent", agent)):
            if value is not None:
                request[key] = value
        data = json.dumps(request).encode("utf-8")
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_coordinate_operation(self._live(), data, len(data), ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))

    def recover_transactions(self) -> list:
        """Finishes the transactions the decision log left unfinished (after a crash of a process
        that used the same log): undecided ones abort, decided ones are sent their decision
        again. start() does this by itself when transactions are enabled. Returns the
        "recovered" list: [{"transactionId", "committed", "unacknowledged"}]. Blocks.

        Raises MCPOptError with status UNSUPPORTED when transactions are off."""
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_transactions_recover(self._live(), ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))["recovered"]

    def on(self, event: Optional[str], callback: Callable[[str, dict], None]) -> Callable[[], None]:
        """Calls `callback(name, data)` for each event named `event` (None: every event):
        cacheHit, cacheMiss, routingError, optimizationError, serverUp, serverDown,
        circuitOpened, circuitClosed... It runs on an engine thread: keep it short. Returns a
        function that unsubscribes."""
        def trampoline(_user, name, data, length):
            text = name.decode()
            if event is None or text == event:
                try:
                    callback(text, json.loads(ctypes.string_at(data, length).decode()))
                except Exception:  # an exception must not unwind into the engine's thread
                    import traceback
                    traceback.print_exc()
        c_callback = _native.EVENT_CALLBACK(trampoline)
        subscription = ctypes.c_uint64()
        check(_native.lib().mcpopt_events_subscribe(self._live(), c_callback, None, ctypes.byref(subscription)))
        self._callbacks[subscription.value] = c_callback  # kept alive while subscribed

        def unsubscribe() -> None:
            if self._callbacks.pop(subscription.value, None) is not None and self._handle is not None:
                check(_native.lib().mcpopt_events_unsubscribe(self._handle, subscription.value))
        return unsubscribe

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
