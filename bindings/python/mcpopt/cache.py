"""The engine's in-process cache (L1): bytes to bytes in a fixed memory budget."""
from __future__ import annotations

import ctypes
import json
import threading
from typing import Iterable, List, Optional, Union

from . import _native
from .errors import BUFFER_TOO_SMALL, NOT_FOUND, check

Bytes = Union[bytes, bytearray, memoryview, str]


def _bytes(value: Bytes, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cache {what}s are bytes or str, not {type(value).__name__}")


def _text(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} is str, not {type(value).__name__}")
    return value.encode("utf-8", "surrogatepass")


class Cache:
    """`engine.cache`. Safe from any thread; reads take no lock inside the library.

    Keys and values are bytes (str is encoded as UTF-8). `get` returns bytes, or None when the
    key is not cached.
    """

    _buffers = threading.local()

    def __init__(self, engine):
        self._engine = engine

    def _buffer(self, size: int) -> ctypes.Array:
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None or len(buffer) < size:
            buffer = ctypes.create_string_buffer(max(size, 64 * 1024))
            self._buffers.buffer = buffer
        return buffer

    def set(self, key: Bytes, value: Bytes, ttl: Optional[float] = None, coherence_group: Optional[str] = None,
            tags: Iterable[str] = ()) -> None:
        """Stores `value` under `key`. `ttl` in seconds (None: until evicted or invalidated).
        Raises MCPOptError with status TOO_LARGE for an item over the largest the cache keeps."""
        k, v = _bytes(key, "key"), _bytes(value, "value")
        options = None
        tag_list = list(tags)
        if ttl is not None or coherence_group is not None or tag_list:
            options = _native.CacheOptions()
            options.struct_size = ctypes.sizeof(_native.CacheOptions)
            if ttl is not None:
                if ttl <= 0:
                    raise ValueError(f"ttl must be positive seconds, not {ttl}")
                options.ttl_ms = max(1, int(round(ttl * 1000)))
            if coherence_group is not None:
                options.coherence_group = _text(coherence_group, "coherence_group")
            if tag_list:
                array = (ctypes.c_char_p * len(tag_list))(*[_text(t, "a tag") for t in tag_list])
                options.tags = ctypes.cast(array, ctypes.POINTER(ctypes.c_char_p))
                options.tag_count = len(tag_list)
        check(_native.lib().mcpopt_cache_set(self._engine._live(), k, len(k), v, len(v),
                                             ctypes.byref(options) if options is not None else None))

    def get(self, key: Bytes) -> Optional[bytes]:
        k = _bytes(key, "key")
        length = ctypes.c_size_t()
        lib = _native.lib()
        buffer = self._buffer(0)
        status = lib.mcpopt_cache_get(self._engine._live(), k, len(k), buffer, len(buffer), ctypes.byref(length))
        if status == BUFFER_TOO_SMALL:
            buffer = self._buffer(length.value)
            status = lib.mcpopt_cache_get(self._engine._live(), k, len(k), buffer, len(buffer), ctypes.byref(length))
        if status == NOT_FOUND:
            return None
        check(status)
        return ctypes.string_at(buffer, length.value)

    def delete(self, key: Bytes) -> bool:
        """Removes `key`; False when it was not cached."""
        k = _bytes(key, "key")
        status = _native.lib().mcpopt_cache_delete(self._engine._live(), k, len(k))
        if status == NOT_FOUND:
            return False
        check(status)
        return True

    def _invalidate(self, function, selector: str, what: str) -> int:
        s = _text(selector, what)
        removed = ctypes.c_size_t()
        check(function(self._engine._live(), s, len(s), ctypes.byref(removed)))
        return removed.value

    def invalidate(self, pattern: str) -> int:
        """Removes every key matching a glob (`Read:/src/*`); returns how many went."""
        return self._invalidate(_native.lib().mcpopt_cache_invalidate, pattern, "pattern")

    def invalidate_group(self, group: str) -> int:
        """Removes every item of a coherence group; returns how many went."""
        return self._invalidate(_native.lib().mcpopt_cache_invalidate_group, group, "group")

    def invalidate_tag(self, tag: str) -> int:
        """Removes every item carrying `tag`; returns how many went."""
        return self._invalidate(_native.lib().mcpopt_cache_invalidate_tag, tag, "tag")

    def clear(self) -> None:
        check(_native.lib().mcpopt_cache_clear(self._engine._live()))

    def stats(self) -> dict:
        """hits, misses, hitRate, items, evictions, expirations, invalidations, memory per class..."""
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_cache_stats(self._engine._live(), ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))

    def hot_keys(self, limit: int = 1000) -> List[dict]:
        """The hottest keys ({"key" or "keyHex", "accessCount"}), hottest first, for warming."""
        out, length = ctypes.c_void_p(), ctypes.c_size_t()
        check(_native.lib().mcpopt_cache_hot_keys(self._engine._live(), limit, ctypes.byref(out), ctypes.byref(length)))
        return json.loads(_native.take_text(out, length))

    # The brief's camelCase names, for code ported from it.
    invalidateGroup = invalidate_group
