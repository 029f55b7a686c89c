import os
import socket
import subprocess
import threading
import time
import uuid

import pytest

import mcpopt
from mcpopt import errors


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


# --- compare-and-set ---------------------------------------------------------------------------

def test_compare_and_set_on_a_local_engine():
    with mcpopt.Engine({}) as engine:
        state = engine.state
        v1 = state.compare_and_set("cas/k", "1", None)  # None: the key must have no value
        assert "@" in v1
        assert state.get("cas/k") == mcpopt.Versioned(b"1", v1)

        with pytest.raises(mcpopt.MCPOptError) as info:
            state.compare_and_set("cas/k", "again", None)
        assert info.value.status == errors.CONFLICT
        assert info.value.status_name == "conflict"
        assert state.get("cas/k") == mcpopt.Versioned(b"1", v1), "a conflict writes nothing"

        current = state.get("cas/k")
        v2 = state.compare_and_set("cas/k", b"2", current.version)
        assert v2 != v1 and state.get("cas/k") == mcpopt.Versioned(b"2", v2)
        assert _stamp_order(v2) > _stamp_order(v1), (v1, v2)

        with pytest.raises(mcpopt.MCPOptError) as info:
            state.compare_and_set("cas/k", "stale", v1)
        assert info.value.status == errors.CONFLICT
        assert state.get("cas/k").value == b"2"

        for bad in ["not a version", "", "12.x@node"]:
            with pytest.raises(mcpopt.MCPOptError) as info:
                state.compare_and_set("cas/k", "x", bad)
            assert info.value.status == errors.INVALID_ARGUMENT, (bad, info.value.message)
        with pytest.raises(mcpopt.MCPOptError) as info:
            state.compare_and_set("cas/k", "x", v2 + "\0junk")
        assert info.value.status == errors.INVALID_ARGUMENT
        with pytest.raises(TypeError):
            state.compare_and_set("cas/k", "x", 12)
        assert state.get("cas/k") == mcpopt.Versioned(b"2", v2)

        # A deleted key has no value again: None matches it.
        assert state.delete("cas/k") is True
        with pytest.raises(mcpopt.MCPOptError) as info:
            state.compare_and_set("cas/k", "x", v2)
        assert info.value.status == errors.CONFLICT
        v3 = state.compare_and_set("cas/k", "3", None)
        assert state.get("cas/k") == mcpopt.Versioned(b"3", v3)
    with pytest.raises(mcpopt.InvalidHandleError):
        state.compare_and_set("cas/k", "x", None)


def test_compare_and_set_from_threads_on_one_engine_loses_no_increment():
    with mcpopt.Engine({}) as engine:
        engine.state.put("cas/counter", "0")
        failures = []
        threads = [threading.Thread(target=_increment, args=(engine, "cas/counter", 100, failures)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads) and not failures, failures
        assert engine.state.get("cas/counter").value == b"400"


def _stamp_order(stamp):
    """A version stamp "<ms>.<counter>@<node>" as a sortable (ms, counter, node)."""
    clock, node = stamp.split("@", 1)
    ms, counter = clock.split(".")
    return int(ms), int(counter), node


def _increment(engine, key, times, failures, max_attempts=10_000):
    """Adds 1 to the integer under key `times` times with get + compare_and_set, retrying on
    CONFLICT (at most max_attempts in all)."""
    attempts = 0
    try:
        for _ in range(times):
            while True:
                attempts += 1
                if attempts > max_attempts:
                    failures.append(f"more than {max_attempts} attempts")
                    return
                current = engine.state.get(key)
                value = int(current.value) if current else 0
                try:
                    engine.state.compare_and_set(key, str(value + 1), current.version if current else None)
                    break
                except mcpopt.MCPOptError as exc:
                    if exc.status != errors.CONFLICT:
                        raise
    except Exception as exc:  # reported by the test's thread
        failures.append(repr(exc))


# --- state shared through a real Redis -----------------------------------------------------------

REDIS = "/usr/bin/redis-server"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis():
    """A throwaway redis-server on a free port: (process, port). Waits (bounded) until it answers PING."""
    if not os.path.exists(REDIS):
        if os.environ.get("CI"):
            pytest.fail(f"{REDIS} is missing (CI is set)")
        pytest.skip(f"{REDIS} is missing")
    port = _free_port()
    process = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return process, port
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_redis(process)
            pytest.fail(f"redis-server did not come up on port {port} (exit {process.poll()})")
        time.sleep(0.05)


def _stop_redis(process):
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_port():
    process, port = _start_redis()
    try:
        yield port
    finally:
        _stop_redis(process)


def _shared(port, model):
    return {"coordination": {"enableStateSynchronization": True, "consistencyModel": model,
                             "redisUrl": f"redis://127.0.0.1:{port}", "syncInterval": 100}}


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_strong_two_engines_count_to_100_with_compare_and_set(redis_port):
    key = f"strong/counter/{uuid.uuid4().hex}"
    with mcpopt.Engine(_shared(redis_port, "strong")) as a, mcpopt.Engine(_shared(redis_port, "strong")) as b:
        failures = []
        threads = [threading.Thread(target=_increment, args=(engine, key, 50, failures)) for engine in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "increments did not finish within 60 s"
        assert not failures, failures
        seen_a, seen_b = a.state.get(key), b.state.get(key)
        assert seen_a.value == b"100" and seen_b.value == b"100", (seen_a, seen_b)
        assert seen_a == seen_b

        # Linearizable per key: a write through one engine is what the other reads next, and a
        # version read before it is stale for both.
        v = a.state.put(key, "x")
        assert b.state.get(key) == mcpopt.Versioned(b"x", v)
        with pytest.raises(mcpopt.MCPOptError) as info:
            b.state.compare_and_set(key, "y", seen_a.version)
        assert info.value.status == errors.CONFLICT
        assert b.state.delete(key) is True
        assert a.state.get(key) is None
        assert a.state.delete(key) is False
        v = b.state.put(key, "z")
        assert a.state.get(key) == mcpopt.Versioned(b"z", v)


def test_strong_compare_and_set_none_on_a_deleted_key(redis_port):
    key = f"strong/deleted/{uuid.uuid4().hex}"
    with mcpopt.Engine(_shared(redis_port, "strong")) as a, mcpopt.Engine(_shared(redis_port, "strong")) as b:
        a.state.put(key, "1")
        assert b.state.delete(key) is True
        assert a.state.get(key) is None and b.state.get(key) is None
        v = a.state.compare_and_set(key, "2", None)
        assert b.state.get(key) == mcpopt.Versioned(b"2", v)


def test_strong_calls_fail_with_unavailable_when_redis_is_down():
    process, port = _start_redis()
    try:
        with mcpopt.Engine(_shared(port, "strong")) as engine:
            v = engine.state.put("k", "1")
            assert engine.state.get("k") == mcpopt.Versioned(b"1", v)
            _stop_redis(process)
            calls = {"put": lambda: engine.state.put("k", "2"), "get": lambda: engine.state.get("k"),
                     "delete": lambda: engine.state.delete("k"),
                     "compare_and_set": lambda: engine.state.compare_and_set("k", "2", v)}
            for name, call in calls.items():
                started = time.monotonic()
                with pytest.raises(mcpopt.MCPOptError) as info:
                    call()
                assert info.value.status == errors.UNAVAILABLE, (name, info.value.status, info.value.message)
                assert info.value.status_name == "unavailable"
                assert time.monotonic() - started < 10, name
    finally:
        _stop_redis(process)


def test_eventual_writes_reach_the_other_engine_and_converge(redis_port):
    prefix = f"eventual/{uuid.uuid4().hex}/"
    with mcpopt.Engine(_shared(redis_port, "eventual")) as a, mcpopt.Engine(_shared(redis_port, "eventual")) as b:
        a.start()  # replication runs once the engine has started
        b.start()
        v = a.state.put(prefix + "one", "from a")
        assert _wait_for(lambda: b.state.get(prefix + "one") is not None), "a's write did not reach b within 5 s"
        assert b.state.get(prefix + "one") == mcpopt.Versioned(b"from a", v)

        # Concurrent writes to one key from both engines: both end with the same version.
        key = prefix + "contended"
        last = {}
        start = threading.Barrier(2, timeout=10)

        def writer(name, engine):
            start.wait()
            for i in range(50):
                last[name] = (f"{name}-{i}", engine.state.put(key, f"{name}-{i}"))

        threads = [threading.Thread(target=writer, args=pair) for pair in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)

        def converged():
            x, y = a.state.get(key), b.state.get(key)
            return x is not None and x == y

        assert _wait_for(converged), (a.state.get(key), b.state.get(key))
        final = a.state.get(key)
        # Last writer wins on the stamp: the later of the two engines' last writes.
        winner = max(last.values(), key=lambda entry: _stamp_order(entry[1]))
        assert final == mcpopt.Versioned(winner[0].encode(), winner[1]), (final, last)
        # ... and it stays so (nothing flips back on a later anti-entropy round).
        time.sleep(0.3)
        assert a.state.get(key) == final and b.state.get(key) == final

        # A delete travels too.
        assert b.state.delete(prefix + "one") is True
        assert _wait_for(lambda: a.state.get(prefix + "one") is None), "b's delete did not reach a within 5 s"


def test_eventual_concurrent_writes_merge_with_a_host_merge(redis_port):
    """A set union as the merge: concurrent writes from two engines end as one value in both,
    holding each engine's last write."""
    key = f"merge/{uuid.uuid4().hex}"

    def union(_key, older, newer):
        items = set(filter(None, older.decode().split(","))) | set(filter(None, newer.decode().split(",")))
        return ",".join(sorted(items)).encode()

    with mcpopt.Engine(_shared(redis_port, "eventual")) as a, mcpopt.Engine(_shared(redis_port, "eventual")) as b:
        a.state.set_merge(union)
        b.state.set_merge(union)
        a.start()
        b.start()
        start = threading.Barrier(2, timeout=10)

        def writer(name, engine):
            start.wait()
            for i in range(30):
                engine.state.put(key, f"{name}{i}")

        threads = [threading.Thread(target=writer, args=pair) for pair in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        def converged():
            x, y = a.state.get(key), b.state.get(key)
            return x is not None and x == y

        assert _wait_for(converged), (a.state.get(key), b.state.get(key))
        items = set(a.state.get(key).value.decode().split(","))
        assert {"a29", "b29"} <= items, items
        a.state.set_merge(None)  # back to last writer wins
