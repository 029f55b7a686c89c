"""Exceptions carrying libmcpopt's status codes and messages."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import List

from . import _native

OK = 0
INVALID_ARGUMENT = 1
INVALID_UTF8 = 2
MALFORMED_JSON = 3
INVALID_CONFIG = 4
INVALID_HANDLE = 5
NOT_FOUND = 6
TOO_LARGE = 7
UNSUPPORTED = 8
BUFFER_TOO_SMALL = 9
CONFLICT = 10
UNAVAILABLE = 11
INTERNAL = 99


@dataclass(frozen=True)
class Issue:
    """One problem in a configuration: the JSON path of the field, and what is wrong with it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class MCPOptError(Exception):
    """A failed libmcpopt call: `status` is the C status code, `issues` any per-field problems."""

    def __init__(self, status: int, message: str, issues: List[Issue] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.issues = list(issues or [])

    @property
    def status_name(self) -> str:
        return _native.lib().mcpopt_status_string(self.status).decode()


class ConfigError(MCPOptError, ValueError):
    """The configuration is not valid JSON, or not a valid configuration."""


class InvalidHandleError(MCPOptError):
    """The object was closed (its handle is no longer live)."""


_CLASSES = {INVALID_UTF8: ConfigError, MALFORMED_JSON: ConfigError, INVALID_CONFIG: ConfigError,
            INVALID_HANDLE: InvalidHandleError}


def last_error() -> MCPOptError:
    """The calling thread's last error as an exception."""
    lib = _native.lib()
    handle = lib.mcpopt_last_error()
    if not handle:
        return MCPOptError(lib.mcpopt_last_status(), lib.mcpopt_last_error_message().decode("utf-8", "replace"))
    try:
        status = lib.mcpopt_error_status(handle)
        message = lib.mcpopt_error_message(handle).decode("utf-8", "replace")
        issues = [Issue(lib.mcpopt_error_issue_path(handle, i).decode("utf-8", "replace"),
                        lib.mcpopt_error_issue_message(handle, i).decode("utf-8", "replace"))
                  for i in range(lib.mcpopt_error_issue_count(handle))]
    finally:
        lib.mcpopt_error_free(ctypes.c_void_p(handle))
    return _CLASSES.get(status, MCPOptError)(status, message, issues)


def check(status: int) -> None:
    """Raises the thread's last error unless `status` is OK."""
    if status != OK:
        raise last_error()
