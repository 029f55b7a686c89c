"""Per-call cost of the cache from Python (ctypes): get hit, get miss, set."""
import json
import timeit

import mcpopt

with mcpopt.Engine({"caching": {"memoryCacheSize": "64MiB"}}) as engine:
    cache = engine.cache
    key = b"k" * 32
    value = b"v" * 256
    cache.set(key, value)
    n = 200_000
    result = {}
    for name, stmt in [("getHitNs", lambda: cache.get(key)), ("getMissNs", lambda: cache.get(b"m" * 32)),
                       ("setNs", lambda: cache.set(key, value)), ("dictGetNs", lambda: {key: value}.get(key))]:
        result[name] = round(min(timeit.repeat(stmt, number=n, repeat=5)) / n * 1e9)
    print(json.dumps(result))
