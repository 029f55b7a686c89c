import pytest

import mcpopt
from mcpopt.errors import INVALID_ARGUMENT, NOT_FOUND

CONFIG = {
    "mcpServers": {"a": {"command": "x", "group": "fs"}, "b": {"command": "x", "group": "fs"}},
    "agents": {"reader": {"allowedTools": ["read_*"]}},
}


def test_route_by_tool_with_recorded_latencies():
    with mcpopt.Engine(CONFIG) as engine:
        tools = {"tools": [{"name": "read_file", "annotations": {"readOnlyHint": True}}, {"name": "write_file"}]}
        engine.router.set_tools("a", tools)
        engine.router.set_tools("b", tools["tools"])
        assert engine.route("missing")["outcome"] == "unknown-tool"
        for _ in range(30):
            engine.router.record("a", "read_file", 0.004)
            engine.router.record("b", "read_file", 0.001)
        decision = engine.route({"method": "tools/call", "params": {"name": "read_file"}}, {"strategy": "predictive"})
        assert decision["server"] == "b" and decision["fallbacks"] == ["a"]
        assert decision["predictedLatencyMs"] == pytest.approx(1.0, abs=0.05)
        assert "lowest predicted latency" in decision["reasoning"]
        unmet = engine.route("read_file", {"maxResponseTime": "0.5ms"})
        assert unmet["outcome"] == "no-server-meets-requirements" and unmet["server"] is None
        assert engine.route("read_file", agent="reader")["outcome"] == "chosen"
        with pytest.raises(mcpopt.MCPOptError) as info:
            engine.route("write_file", agent="reader")
        assert info.value.status == INVALID_ARGUMENT


def test_register_remove_stats_and_circuit():
    with mcpopt.Engine(CONFIG) as engine:
        router = engine.router
        router.register_server({"id": "x", "transport": "http", "tools": [{"name": "t"}], "weight": 2})
        assert router.route("t")["server"] == "x"
        for _ in range(12):
            router.record("x", "t", 0.001, success=False)
        stats = {s["id"]: s for s in router.stats()["servers"]}
        assert stats["x"]["circuit"] == "open" and stats["x"]["successRate"] == 0
        assert router.route("t")["outcome"] == "last-resort"
        assert router.remove_server("x") is True
        assert router.remove_server("x") is False


def test_bad_input_is_refused_with_the_field_path():
    with mcpopt.Engine(CONFIG) as engine:
        with pytest.raises(mcpopt.MCPOptError) as info:
            engine.route("t", {"minSuccessRate": 5})
        assert info.value.status == INVALID_ARGUMENT and "$.requirements.minSuccessRate" in info.value.message
        with pytest.raises(mcpopt.MCPOptError) as info:
            engine.router.register_server({"id": "y", "tools": [{"name": 1}]})
        assert "$.tools[0].name" in info.value.message
        with pytest.raises(mcpopt.MCPOptError) as info:
            engine.router.record("nobody", "t", 0.001)
        assert info.value.status == NOT_FOUND
        with pytest.raises(TypeError):
            engine.route(42)
        with pytest.raises(ValueError):
            engine.router.record("a", "t", -1)
