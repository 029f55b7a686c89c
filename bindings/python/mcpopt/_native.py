"""Loads libmcpopt and declares the C functions of include/mcpopt.h for ctypes."""
from __future__ import annotations

import ctypes
import os
import pathlib
import threading
from typing import Optional

ABI_VERSION = 1
NUL_TERMINATED = ctypes.c_size_t(-1).value

# void (*)(void *user_data, const char *key, size_t key_length, const void *value,
#          size_t value_length, const char *version, int deleted)
STATE_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t,
                                  ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_int)

# void (*)(void *user_data, const char *key, size_t key_length, const void *older, size_t older_length,
#          const void *newer, size_t newer_length, mcpopt_merge_result *result)
MERGE_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t,
                                  ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


# void (*)(void *user_data, const char *name, const char *data_json, size_t data_length)
EVENT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t)


class CacheOptions(ctypes.Structure):
    """struct mcpopt_cache_options."""
    _fields_ = [("struct_size", ctypes.c_size_t), ("ttl_ms", ctypes.c_int64),
                ("coherence_group", ctypes.c_char_p), ("tags", ctypes.POINTER(ctypes.c_char_p)),
                ("tag_count", ctypes.c_size_t)]


_lib: Optional[ctypes.CDLL] = None
_lock = threading.Lock()


class LibraryNotFound(OSError):
    """libmcpopt could not be loaded from any of the places searched."""


def _candidates() -> list[str]:
    found = []
    env = os.environ.get("MCPOPT_LIBRARY")
    if env:
        found.append(env)
    here = pathlib.Path(__file__).resolve().parent
    found += [str(p) for p in sorted(here.glob("libmcpopt.so*"))]
    found += ["libmcpopt.so.1", "libmcpopt.so"]
    return found


def _declare(lib: ctypes.CDLL) -> None:
    c = ctypes
    status, cstr, size = c.c_int32, c.c_char_p, c.c_size_t
    vp = c.c_void_p
    sigs = {
        "mcpopt_version": ([], cstr),
        "mcpopt_abi_version": ([], c.c_uint32),
        "mcpopt_status_string": ([status], cstr),
        "mcpopt_last_error_message": ([], cstr),
        "mcpopt_last_status": ([], status),
        "mcpopt_last_error": ([], vp),
        "mcpopt_error_status": ([vp], status),
        "mcpopt_error_message": ([vp], cstr),
        "mcpopt_error_issue_count": ([vp], size),
        "mcpopt_error_issue_path": ([vp, size], cstr),
        "mcpopt_error_issue_message": ([vp, size], cstr),
        "mcpopt_error_free": ([vp], None),
        "mcpopt_free": ([vp], None),
        "mcpopt_config_validate": ([c.c_char_p, size], status),
        "mcpopt_engine_create": ([c.c_char_p, size, c.POINTER(vp)], status),
        "mcpopt_engine_destroy": ([vp], status),
        "mcpopt_engine_describe": ([vp, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_state_put": ([vp, c.c_char_p, size, c.c_char_p, size, c.POINTER(vp)], status),
        "mcpopt_state_get": ([vp, c.c_char_p, size, c.POINTER(vp), c.POINTER(size), c.POINTER(vp)], status),
        "mcpopt_state_delete": ([vp, c.c_char_p, size], status),
        "mcpopt_state_compare_and_set": ([vp, c.c_char_p, size, c.c_char_p, c.c_char_p, size, c.POINTER(vp)], status),
        "mcpopt_state_watch": ([vp, c.c_char_p, size, STATE_CALLBACK, vp, c.POINTER(c.c_uint64)], status),
        "mcpopt_state_unwatch": ([vp, c.c_uint64], status),
        "mcpopt_state_set_merge": ([vp, MERGE_CALLBACK, vp], status),
        "mcpopt_merge_result_set": ([vp, c.c_char_p, size], status),
        "mcpopt_cache_set": ([vp, c.c_char_p, size, c.c_char_p, size, c.POINTER(CacheOptions)], status),
        "mcpopt_cache_get": ([vp, c.c_char_p, size, vp, size, c.POINTER(size)], status),
        "mcpopt_cache_get_copy": ([vp, c.c_char_p, size, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_cache_delete": ([vp, c.c_char_p, size], status),
        "mcpopt_cache_invalidate": ([vp, c.c_char_p, size, c.POINTER(size)], status),
        "mcpopt_cache_invalidate_group": ([vp, c.c_char_p, size, c.POINTER(size)], status),
        "mcpopt_cache_invalidate_tag": ([vp, c.c_char_p, size, c.POINTER(size)], status),
        "mcpopt_cache_clear": ([vp], status),
        "mcpopt_cache_stats": ([vp, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_cache_hot_keys": ([vp, size, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_route": ([vp, c.c_char_p, size, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_route_register_server": ([vp, c.c_char_p, size], status),
        "mcpopt_route_set_tools": ([vp, c.c_char_p, size, c.c_char_p, size], status),
        "mcpopt_route_remove_server": ([vp, c.c_char_p, size], status),
        "mcpopt_route_record": ([vp, c.c_char_p, size, c.c_char_p, size, c.c_int64, c.c_int], status),
        "mcpopt_route_stats": ([vp, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_engine_start": ([vp], status),
        "mcpopt_engine_stop": ([vp], status),
        "mcpopt_optimize_request": ([vp, c.c_char_p, size, c.c_char_p, size, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_metrics": ([vp, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_metrics_prometheus": ([vp, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_health_check": ([vp, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_events_subscribe": ([vp, EVENT_CALLBACK, vp, c.POINTER(c.c_uint64)], status),
        "mcpopt_events_unsubscribe": ([vp, c.c_uint64], status),
        "mcpopt_coordinate_operation": ([vp, c.c_char_p, size, c.POINTER(vp), c.POINTER(size)], status),
        "mcpopt_transactions_recover": ([vp, c.POINTER(vp), c.POINTER(size)], status),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res


def lib() -> ctypes.CDLL:
    """The loaded library (loaded once, on first use)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for candidate in _candidates():
            try:
                loaded = ctypes.CDLL(candidate)
            except OSError as exc:
                errors.append(f"{candidate}: {exc}")
                continue
            _declare(loaded)
            abi = loaded.mcpopt_abi_version()
            if abi != ABI_VERSION:
                errors.append(f"{candidate}: ABI version {abi}, this binding needs {ABI_VERSION}")
                continue
            _lib = loaded
            return loaded
        raise LibraryNotFound("cannot load libmcpopt; set MCPOPT_LIBRARY to its path. Tried:\n  " + "\n  ".join(errors))


def take_bytes(pointer: ctypes.c_void_p, length: int) -> bytes:
    """Copies and frees bytes the library handed out (caller frees with mcpopt_free)."""
    try:
        return ctypes.string_at(pointer, length) if length else b""
    finally:
        lib().mcpopt_free(pointer)


def take_cstring(pointer: ctypes.c_void_p) -> str:
    """Decodes and frees a NUL-terminated text the library handed out."""
    try:
        return ctypes.string_at(pointer).decode("utf-8")
    finally:
        lib().mcpopt_free(pointer)


def take_text(pointer: ctypes.c_void_p, length: ctypes.c_size_t) -> str:
    """Decodes and frees a text the library handed out (caller frees with mcpopt_free)."""
    try:
        return ctypes.string_at(pointer, length.value).decode("utf-8")
    finally:
        lib().mcpopt_free(pointer)
