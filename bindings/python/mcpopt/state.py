"""The engine's shared state: versioned keys with hybrid-logical-clock stamps, and watchers."""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Union

from . import _native
from .errors import INVALID_ARGUMENT, NOT_FOUND, MCPOptError, check

Value = Union[bytes, bytearray, memoryview, str]
Listener = Callable[[str, bytes, str, bool], None]


@dataclass(frozen=True)
class Versioned:
    value: bytes
    version: str


def _key(key: str) -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"state keys are str, not {type(key).__name__}")
    return key.encode("utf-8", "surrogatepass")


def _value(value: Value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"state values are bytes or str, not {type(value).__name__}")


class Watch:
    """A running watch; close() (or leaving a with block) stops it."""

    def __init__(self, state: "State", watch_id: int, callback: object):
        self._state, self.id, self._callback = state, watch_id, callback

    def close(self) -> None:
        if self._state is not None:
            self._state._unwatch(self)
            self._state = None

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class State:
    """`engine.state`. Listeners run on the thread that made the change, before its call returns."""

    def __init__(self, engine):
        self._engine = engine
        self._watches: Dict[int, Watch] = {}
        self._merges: list = []
        self._lock = threading.Lock()

    def put(self, key: str, value: Value) -> str:
        """Stores a value; returns its version stamp."""
        k, v = _key(key), _value(value)
        version = ctypes.c_void_p()
        check(_native.lib().mcpopt_state_put(self._engine._live(), k, len(k), v, len(v), ctypes.byref(version)))
        return _native.take_cstring(version)

    def get(self, key: str) -> Optional[Versioned]:
        k = _key(key)
        out, length, version = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_void_p()
        status = _native.lib().mcpopt_state_get(self._engine._live(), k, len(k), ctypes.byref(out), ctypes.byref(length), ctypes.byref(version))
        if status == NOT_FOUND:
            return None
        check(status)
        stamp = _native.take_cstring(version)
        return Versioned(_native.take_bytes(out, length.value), stamp)

    def compare_and_set(self, key: str, value: Value, expected_version: Optional[str]) -> str:
        """Stores a value only if the key is still at `expected_version` (a stamp from get() or a
        previous write; None: the key must have no value). Returns the new version stamp; raises
        MCPOptError with status CONFLICT (nothing written) when the key is at another version: read
        it again and retry. Linearizable under the "strong" consistency model; otherwise atomic
        within this engine only. Under "strong" it may raise UNAVAILABLE when Redis is down."""
        k, v = _key(key), _value(value)
        if expected_version is None:
            expected = None
        elif isinstance(expected_version, str):
            expected = expected_version.encode("utf-8", "surrogatepass")
            if b"\0" in expected:
                raise MCPOptError(INVALID_ARGUMENT, "expected_version contains a NUL character")
        else:
            raise TypeError(f"expected_version is a str or None, not {type(expected_version).__name__}")
        version = ctypes.c_void_p()
        check(_native.lib().mcpopt_state_compare_and_set(self._engine._live(), k, len(k), expected, v, len(v),
                                                         ctypes.byref(version)))
        return _native.take_cstring(version)

    def set_merge(self, merge: Optional[Callable[[str, bytes, bytes], Optional[bytes]]]) -> None:
        """Resolves conflicting versions from other engine instances (shared state, eventual)
        with merge(key, older, newer) -> merged bytes (None keeps newer) instead of last writer
        wins; None goes back to last writer wins. The merge must be deterministic, and to
        converge it should be a join (commutative, associative, idempotent: a set union, a
        maximum). It runs on an engine thread: keep it quick, and do not call the engine."""
        if merge is None:
            check(_native.lib().mcpopt_state_set_merge(self._engine._live(), _native.MERGE_CALLBACK(), None))
            return

        def trampoline(_user, key, key_length, older, older_length, newer, newer_length, result):
            try:
                merged = merge(ctypes.string_at(key, key_length).decode("utf-8", "replace"),
                               ctypes.string_at(older, older_length) if older_length else b"",
                               ctypes.string_at(newer, newer_length) if newer_length else b"")
                if merged is not None:
                    value = _value(merged)
                    _native.lib().mcpopt_merge_result_set(result, value, len(value))
            except Exception:  # an exception must not cross into C: the newer value stands
                import traceback
                traceback.print_exc()

        callback = _native.MERGE_CALLBACK(trampoline)
        check(_native.lib().mcpopt_state_set_merge(self._engine._live(), callback, None))
        # Kept alive for the engine's life: a merge already running may still be in an old one.
        self._merges.append(callback)

    def delete(self, key: str) -> bool:
        """Deletes a key; False when it had no value."""
        k = _key(key)
        status = _native.lib().mcpopt_state_delete(self._engine._live(), k, len(k))
        if status == NOT_FOUND:
            return False
        check(status)
        return True

    def watch(self, prefix: str, listener: Listener) -> Watch:
        """Calls listener(key, value, version, deleted) for every change under prefix."""
        p = _key(prefix)

        def trampoline(_user, key, key_length, value, value_length, version, deleted):
            try:
                listener(ctypes.string_at(key, key_length).decode("utf-8", "replace"),
                         ctypes.string_at(value, value_length) if value_length else b"",
                         version.decode(), bool(deleted))
            except Exception:  # an exception must not cross into C
                import traceback
                traceback.print_exc()

        callback = _native.STATE_CALLBACK(trampoline)
        watch_id = ctypes.c_uint64()
        check(_native.lib().mcpopt_state_watch(self._engine._live(), p, len(p), callback, None, ctypes.byref(watch_id)))
        watch = Watch(self, watch_id.value, callback)  # keeps the callback alive
        with self._lock:
            self._watches[watch.id] = watch
        return watch

    def _unwatch(self, watch: Watch) -> None:
        with self._lock:
            self._watches.pop(watch.id, None)
        if not self._engine.closed:
            status = _native.lib().mcpopt_state_unwatch(self._engine._live(), watch.id)
            if status not in (0, NOT_FOUND):
                check(status)
