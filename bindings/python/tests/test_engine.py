import json
import os
import pathlib
import threading

import pytest

import mcpopt
from mcpopt import errors

EXAMPLE = pathlib.Path(os.environ.get("MCPOPT_EXAMPLE_CONFIG", pathlib.Path(__file__).parents[3] / "examples" / "mcpopt.json"))


def test_version_and_abi():
    assert mcpopt.version() == "0.1.0"
    assert mcpopt.ABI_VERSION == 1


def test_engine_from_real_config_file():
    with mcpopt.Engine(EXAMPLE.read_text()) as engine:
        info = engine.describe()
    assert info["servers"]["active"] == 4
    assert info["servers"]["groups"]["search"] == ["search-a", "search-b"]
    assert info["config"]["caching"]["memoryCacheSize"] == 64 << 20
    # Python has no jemalloc: the library uses the system allocator and loads fine.
    assert info["allocator"] == "system"
    assert "example-token" not in json.dumps(info)
    assert engine.closed


def test_engine_from_dict_fills_defaults():
    with mcpopt.Engine({"mcpServers": {"t": {"command": "mcp-server-time"}}}) as engine:
        config = engine.describe()["config"]
    assert config["routing"]["minConfidence"] == 0.7
    assert config["mcpServers"]["t"]["type"] == "stdio"


def test_invalid_config_names_json_paths():
    bad = {"mcpServers": {"git": {"command": "mcp-server-git", "args": ["--repository", 7]}},
           "routing": {"minConfidence": 1.5}, "cachng": {}}
    with pytest.raises(mcpopt.ConfigError) as info:
        mcpopt.Engine(bad)
    exc = info.value
    assert exc.status == errors.INVALID_CONFIG
    assert exc.status_name == "invalid config"
    paths = [i.path for i in exc.issues]
    assert paths == ["$.mcpServers.git.args[1]", "$.routing.minConfidence", "$.cachng"]
    assert 'did you mean "caching"' in exc.issues[2].message
    assert mcpopt.validate_config(bad) == exc.issues
    assert mcpopt.validate_config({}) == []


@pytest.mark.parametrize("text,status", [
    (b'{"mcpServers":', errors.MALFORMED_JSON),
    (b"", errors.MALFORMED_JSON),
    (b'{"a":"\xff"}', errors.INVALID_UTF8),
    ('{"a":"\udcff"}', errors.INVALID_UTF8),  # a lone surrogate is not UTF-8
    (b"[]", errors.INVALID_CONFIG),
    (b'{"a":1}\x00', errors.MALFORMED_JSON),
])
def test_bad_text_is_a_config_error(text, status):
    with pytest.raises(mcpopt.ConfigError) as info:
        mcpopt.Engine(text)
    assert info.value.status == status
    assert info.value.issues and info.value.issues[0].path == "$"


def test_wrong_type_is_a_type_error():
    with pytest.raises(TypeError):
        mcpopt.Engine(42)


def test_closed_engine_raises_and_close_is_idempotent():
    engine = mcpopt.Engine({})
    engine.close()
    engine.close()
    with pytest.raises(mcpopt.InvalidHandleError):
        engine.describe()


def test_stale_handle_is_refused_by_the_library():
    lib = mcpopt._native.lib()
    engine = mcpopt.Engine({})
    handle = engine._handle
    engine.close()
    assert lib.mcpopt_engine_destroy(handle) == errors.INVALID_HANDLE
    assert b"not live" in lib.mcpopt_last_error_message()
    assert lib.mcpopt_engine_create(None, 0, None) == errors.INVALID_ARGUMENT


def test_threads_share_the_library():
    failures = []

    def work():
        try:
            for _ in range(50):
                with mcpopt.Engine({"mcpServers": {"a": {"url": "http://127.0.0.1:1/mcp"}}}) as e:
                    assert e.describe()["servers"]["http"] == 1
                assert mcpopt.validate_config({"routing": {"minConfidence": 3}})[0].path == "$.routing.minConfidence"
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures
