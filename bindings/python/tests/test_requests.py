"""optimize_request from Python against real MCP servers over stdio: a FastMCP key-value server
(Tests/interop/kv_server.py) and mcp-server-time from PyPI."""
import json
import pathlib
import sys
import threading

import pytest

import mcpopt
from mcpopt import errors

REPO = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent


def config(**extra):
    servers = {
        "kv": {"command": sys.executable, "args": [str(REPO / "Tests/interop/kv_server.py"), "--name", "kv"], "trustAnnotations": True},
        "time": {"command": str(BIN / "mcp-server-time"), "args": ["--local-timezone", "UTC"]},
    }
    return {"mcpServers": servers, **extra}


def text(result):
    return result["response"]["result"]["content"][0]["text"]


def test_calls_are_served_cached_and_invalidated():
    with mcpopt.Engine(config()) as engine:
        events = []
        unsubscribe = engine.on(None, lambda name, data: events.append(name))
        engine.start()
        put = engine.call_tool("put", {"key": "a", "value": "1"})
        assert put["success"] and put["server"] == "kv" and put["cacheSource"] == "origin"
        first = engine.call_tool("get", {"key": "a"})
        second = engine.optimize_request({"jsonrpc": "2.0", "id": "mine", "method": "tools/call",
                                          "params": {"name": "get", "arguments": {"key": "a"}}})
        assert (first["cacheSource"], second["cacheSource"]) == ("origin", "memory")
        assert second["response"]["id"] == "mine" and text(second) == "1"
        engine.call_tool("put", {"key": "a", "value": "2"})
        third = engine.call_tool("get", {"key": "a"})
        assert third["cacheSource"] == "origin" and text(third) == "2"
        converted = engine.call_tool("convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
        assert converted["server"] == "time" and "21:00" in text(converted)
        metrics = engine.get_optimization_metrics()
        assert metrics["cache"]["hits"] == 1 and metrics["system"]["requests"] >= 5
        assert metrics["coordination"]["activeServers"] == 2
        assert "mcpopt_cache_hits_total 1" in engine.prometheus_metrics()
        health = engine.perform_health_check()
        assert health["status"] == "healthy" and {s["name"] for s in health["servers"]} == {"kv", "time"}
        assert "cacheHit" in events and "cacheMiss" in events
        unsubscribe()


def test_concurrent_identical_calls_from_threads_are_merged():
    with mcpopt.Engine(config()) as engine:
        engine.start()
        results = []
        def worker():
            results.append(engine.call_tool("slow_get", {"key": "k", "ms": 300}))
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 8 and all(r["success"] for r in results)
        assert sum(r["cacheSource"] == "origin" for r in results) == 1
        reads = engine.call_tool("reads_served", {}, bypass_cache=True, servers=["kv"])
        # The merged read, plus this call itself is not a read: 1 read reached the server.
        assert text(reads) == "1"


def test_bad_requests_get_clear_errors():
    with mcpopt.Engine(config()) as engine:
        for bad, status in [(b"{nope", errors.MALFORMED_JSON), (b'{"a":"\xff"}', errors.INVALID_UTF8),
                            (b'{"jsonrpc":"2.0","method":"notifications/x"}', errors.INVALID_ARGUMENT)]:
            with pytest.raises(errors.MCPOptError) as raised:
                engine.optimize_request(bad)
            assert raised.value.status == status, raised.value.message
        with pytest.raises(errors.MCPOptError, match="unknown key"):
            lib = mcpopt._native.lib()
            import ctypes
            out, length = ctypes.c_void_p(), ctypes.c_size_t()
            req = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
            errors.check(lib.mcpopt_optimize_request(engine._live(), req, len(req), b'{"nope":1}', 10, ctypes.byref(out), ctypes.byref(length)))
        unknown = engine.call_tool("no_such_tool", {})
        assert not unknown["success"] and unknown["response"]["error"]["code"] == -32602
        # Still serving.
        assert engine.call_tool("get", {"key": "x"})["success"]
