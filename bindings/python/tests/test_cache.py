import threading
import time

import pytest

import mcpopt
from mcpopt.errors import INVALID_ARGUMENT, TOO_LARGE


@pytest.fixture
def engine():
    with mcpopt.Engine({"caching": {"memoryCacheSize": "8MiB", "coherenceTimeout": "50ms"}}) as e:
        yield e


def test_set_get_delete(engine):
    cache = engine.cache
    assert cache.get("k") is None
    cache.set("k", "value")
    assert cache.get("k") == b"value"
    cache.set(b"\x00\xff", bytes(range(256)))
    assert cache.get(b"\x00\xff") == bytes(range(256))
    big = b"x" * 200_000  # more than the reusable read buffer
    cache.set("big", big)
    assert cache.get("big") == big
    cache.set("empty", b"")
    assert cache.get("empty") == b""
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get("k") is None


def test_ttl_groups_tags_and_invalidation(engine):
    cache = engine.cache
    cache.set("Read:/src/a", "1", coherence_group="fs", tags=["src"])
    cache.set("Read:/src/b", "2", tags=["src", "lib"])
    cache.set("Read:/docs/c", "3", coherence_group="fs")
    cache.set("other", "4")
    assert cache.invalidate_tag("lib") == 1
    assert cache.invalidate("Read:/src/*") == 1
    assert cache.invalidateGroup("fs") == 1
    assert cache.get("other") == b"4"
    cache.set("short", "s", ttl=0.03)
    cache.set("grouped", "g", ttl=60, coherence_group="g")  # bounded by coherenceTimeout (50 ms)
    cache.set("long", "l", ttl=60)
    time.sleep(0.15)
    assert cache.get("short") is None
    assert cache.get("grouped") is None
    assert cache.get("long") == b"l"
    cache.clear()
    assert cache.get("long") is None


def test_stats_and_hot_keys(engine):
    cache = engine.cache
    cache.set("hot", "h")
    cache.set("cold", "c")
    for _ in range(3):
        cache.get("hot")
    cache.get("missing")
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["items"]) == (3, 1, 2)
    assert stats["pageBytes"] <= stats["memoryBudget"] == 8 << 20
    assert stats["pageSource"] in ("jemalloc", "mmap")
    assert [k["key"] for k in cache.hot_keys(10)] == ["hot"]


def test_bad_input_raises_clear_errors_and_loses_nothing(engine):
    cache = engine.cache
    cache.set("keep", "me")
    with pytest.raises(mcpopt.MCPOptError) as info:
        cache.set("", "v")
    assert info.value.status == INVALID_ARGUMENT and "key is empty" in info.value.message
    with pytest.raises(mcpopt.MCPOptError) as info:
        cache.set("huge", b"x" * (2 << 20))
    assert info.value.status == TOO_LARGE and "too large to cache" in info.value.message
    with pytest.raises(TypeError):
        cache.set(42, "v")
    with pytest.raises(ValueError):
        cache.set("k", "v", ttl=0)
    with pytest.raises(mcpopt.MCPOptError):
        cache.invalidate("")
    assert cache.get("keep") == b"me"


def test_closed_engine_is_refused():
    engine = mcpopt.Engine({})
    cache = engine.cache
    engine.close()
    with pytest.raises(mcpopt.InvalidHandleError):
        cache.get("k")


def test_threads_share_the_cache(engine):
    cache = engine.cache
    errors = []

    def work(n):
        try:
            for i in range(500):
                cache.set(f"k{i % 50}", f"v{n}-{i}")
                got = cache.get(f"k{i % 50}")
                assert got is None or got.startswith(b"v")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cache.stats()["items"] == 50
