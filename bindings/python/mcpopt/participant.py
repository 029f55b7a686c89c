"""Make a FastMCP server a participant in mcpopt's two-phase commit.

MCP has no transaction primitive, so mcpopt's coordinator follows a small convention
(docs/COORDINATION.md): a participant offers three tools,

    tx_prepare(transaction_id, payload)  -> {"vote": "yes"} or {"vote": "no", "reason": "..."}
    tx_commit(transaction_id)            -> {"state": "committed"}
    tx_abort(transaction_id)             -> {"state": "aborted"}

Commit and abort are idempotent (the coordinator may repeat them after a crash), and a commit
of a transaction that was never prepared here is refused.

    from fastmcp import FastMCP
    from mcpopt.participant import transactional

    mcp = FastMCP("inventory")
    staged = {}

    def prepare(tx, payload):
        if payload["count"] > stock():
            return False, "not enough stock"
        staged[tx] = payload
        return True, None

    transactional(mcp, prepare=prepare, commit=lambda tx: apply(staged.pop(tx)),
                  abort=lambda tx: staged.pop(tx, None))
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, Tuple

PrepareFn = Callable[[str, Any], Tuple[bool, Optional[str]]]
DecisionFn = Callable[[str], Any]

CAPABILITY = "io.mcpopt/transactions"


class TransactionBook:
    """The participant's side of the protocol: which transactions are prepared or decided."""

    def __init__(self, prepare: PrepareFn, commit: DecisionFn, abort: DecisionFn):
        self._prepare, self._commit, self._abort = prepare, commit, abort
        self._lock = threading.Lock()
        self.states: Dict[str, str] = {}

    def prepare(self, transaction_id: str, payload: Any = None) -> dict:
        with self._lock:
            state = self.states.get(transaction_id)
            if state == "prepared":
                return {"vote": "yes"}
            if state is not None:
                return {"vote": "no", "reason": f"transaction already {state}"}
        try:
            ok, reason = self._prepare(transaction_id, payload)
        except Exception as exc:  # a failing prepare is a no vote, never a crash
            ok, reason = False, f"prepare failed: {exc}"
        with self._lock:
            self.states[transaction_id] = "prepared" if ok else "aborted"
        return {"vote": "yes"} if ok else {"vote": "no", "reason": reason or "refused"}

    def commit(self, transaction_id: str) -> dict:
        with self._lock:
            state = self.states.get(transaction_id)
            if state == "committed":
                return {"state": "committed"}
            if state != "prepared":
                raise ValueError(f"cannot commit transaction {transaction_id!r}: it is {state or 'unknown'} here")
        self._commit(transaction_id)
        with self._lock:
            self.states[transaction_id] = "committed"
        return {"state": "committed"}

    def abort(self, transaction_id: str) -> dict:
        with self._lock:
            state = self.states.get(transaction_id)
            if state == "committed":
                raise ValueError(f"cannot abort transaction {transaction_id!r}: it is committed")
            if state == "aborted":
                return {"state": "aborted"}
        if state == "prepared":
            self._abort(transaction_id)
        with self._lock:
            self.states[transaction_id] = "aborted"
        return {"state": "aborted"}


def transactional(mcp: Any, *, prepare: PrepareFn, commit: DecisionFn, abort: DecisionFn) -> TransactionBook:
    """Registers tx_prepare, tx_commit and tx_abort on a FastMCP server; returns the book."""
    book = TransactionBook(prepare, commit, abort)

    @mcp.tool(name="tx_prepare", description="mcpopt two-phase commit: prepare a transaction and vote")
    def tx_prepare(transaction_id: str, payload: Any = None) -> dict:
        return book.prepare(transaction_id, payload)

    @mcp.tool(name="tx_commit", description="mcpopt two-phase commit: commit a prepared transaction (idempotent)")
    def tx_commit(transaction_id: str) -> dict:
        return book.commit(transaction_id)

    @mcp.tool(name="tx_abort", description="mcpopt two-phase commit: abort a transaction (idempotent)")
    def tx_abort(transaction_id: str) -> dict:
        return book.abort(transaction_id)

    return book
