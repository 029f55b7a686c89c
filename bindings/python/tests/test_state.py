import threading

import pytest

import mcpopt


def test_put_get_delete_and_versions():
    with mcpopt.Engine({}) as engine:
        v1 = engine.state.put("cfg/limit", "10")
        v2 = engine.state.put("cfg/limit", b"20")
        assert v1 != v2 and "@" in v2
        got = engine.state.get("cfg/limit")
        assert got == mcpopt.Versioned(b"20", v2)
        engine.state.put("bin", bytes([0, 255, 10]))
        assert engine.state.get("bin").value == bytes([0, 255, 10])
        assert engine.state.delete("cfg/limit") is True
        assert engine.state.get("cfg/limit") is None
        assert engine.state.delete("cfg/limit") is False


def test_watchers_see_changes_under_their_prefix_until_closed():
    with mcpopt.Engine({}) as engine:
        seen = []
        with engine.state.watch("cfg/", lambda *event: seen.append(event)):
            engine.state.put("cfg/a", "1")
            engine.state.put("other", "x")
            engine.state.delete("cfg/a")
        engine.state.put("cfg/b", "2")
        assert [(k, v, d) for k, v, _, d in seen] == [("cfg/a", b"1", False), ("cfg/a", b"", True)]


def test_a_failing_listener_does_not_break_the_write(capsys):
    with mcpopt.Engine({}) as engine:
        engine.state.watch("", lambda *event: 1 / 0)
        engine.state.put("k", "v")
        assert engine.state.get("k").value == b"v"
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_bad_arguments():
    with mcpopt.Engine({}) as engine:
        with pytest.raises(TypeError):
            engine.state.put(1, "v")
        with pytest.raises(TypeError):
            engine.state.put("k", 3.5)
        with pytest.raises(mcpopt.MCPOptError) as info:
            engine.state.put("", "v")
        assert info.value.status == 1
        with pytest.raises(mcpopt.MCPOptError) as info:
            engine.state.put("\udcff", "v")
        assert info.value.status == 2
    with pytest.raises(mcpopt.InvalidHandleError):
        engine.state.put("k", "v")


def test_threads_write_and_watch():
    with mcpopt.Engine({}) as engine:
        count = []
        engine.state.watch("t/", lambda *e: count.append(1))
        threads = [threading.Thread(target=lambda i=i: [engine.state.put(f"t/{i}", str(n)) for n in range(100)]) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(count) == 400
        assert all(engine.state.get(f"t/{i}").value == b"99" for i in range(4))
