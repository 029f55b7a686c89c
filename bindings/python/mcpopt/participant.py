"""Make a FastMCP server a participant in mcpopt's two-phase commit.

MCP has no transaction primitive, so mcpopt's coordinator follows a small convention
(docs/COORDINATION.md): a participant offers three tools,

    tx_prepare(transaction_id, payload)  -> {"vote": "yes"} or {"vote": "no", "reason": "..."}
    tx_commit(transaction_id)            -> {"state": "committed"}
    tx_abort(transaction_id)             -> {"state": "aborted"}

and, for operators and tests, tx_status(transaction_id) -> {"state": "prepared" | "committed" |
"aborted" | "unknown"}. Commit and abort are idempotent (the coordinator may repeat them after a
crash), a commit of a transaction that was never prepared here is refused, and so is an abort of
a committed one. A no vote (or a failing prepare) leaves the transaction aborted.

A yes vote is a promise to commit even if this process restarts. With path=None the book lives
in memory only; with a path it lives in a SQLite database (WAL, synchronous=FULL) holding each
transaction's state and prepare payload, written durably before a vote is returned and before a
commit or abort is acknowledged. A book opened again on the same file keeps prepared transactions
committable, answers decided ones as before, and gives back what was staged through
book.payload(transaction_id):

    from fastmcp import FastMCP
    from mcpopt.participant import transactional

    mcp = FastMCP("inventory")

    def prepare(tx, payload):
        if payload["count"] > stock():
            return False, "not enough stock"
        return True, None                      # the payload itself is kept in the book

    book = transactional(mcp, prepare=prepare, commit=lambda tx: apply(book.payload(tx)),
                         abort=lambda tx: None, path="inventory.tx.db")

The commit (or abort) callback runs before its outcome is recorded, so a crash between the two
runs it again for the same transaction after the restart: make it idempotent (e.g. set a value
rather than add to it).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any, Callable, Dict, Optional, Set, Tuple

PrepareFn = Callable[[str, Any], Tuple[bool, Optional[str]]]
DecisionFn = Callable[[str], Any]

CAPABILITY = "io.mcpopt/transactions"

_SCHEMA = "CREATE TABLE IF NOT EXISTS transactions (id TEXT PRIMARY KEY, state TEXT NOT NULL, payload TEXT)"


class TransactionBook:
    """The participant's side of the protocol: which transactions are prepared or decided.

    states maps transaction id -> "prepared", "committed" or "aborted" (read it, don't write it).
    With path, the states and payloads are kept in that SQLite file and reloaded from it.
    """

    def __init__(self, prepare: PrepareFn, commit: DecisionFn, abort: DecisionFn, path: Optional[str] = None):
        self._prepare, self._commit, self._abort = prepare, commit, abort
        # One lock for the book. Re-entrant, because the commit and abort callbacks run under it
        # and may call book.payload() or book.status().
        self._lock = threading.RLock()
        self._preparing: Set[str] = set()  # prepare callbacks running now (outside the lock)
        self._payloads: Dict[str, Any] = {}  # in memory only; with a path the payloads stay in the file
        self.states: Dict[str, str] = {}
        self._db: Optional[sqlite3.Connection] = None
        if path is not None:
            # FastMCP runs sync tools on worker threads: the connection is shared, guarded by the lock.
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # every commit is fsynced, WAL included
            with self._db:
                self._db.execute(_SCHEMA)
            self.states.update(self._db.execute("SELECT id, state FROM transactions"))

    def close(self) -> None:
        """Closes the database (a no-op in memory)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _record(self, transaction_id: str, state: str, payload: Optional[str] = None) -> None:
        """Records a state, durably first when there is a file; the caller holds the lock.
        payload (JSON text) is given only with "prepared"; later states keep it."""
        if self._db is not None:
            with self._db:  # one SQLite transaction, committed (and fsynced) on leaving
                self._db.execute("INSERT INTO transactions (id, state, payload) VALUES (?, ?, ?) "
                                 "ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                                 (transaction_id, state, payload))
        self.states[transaction_id] = state

    def status(self, transaction_id: str) -> dict:
        """{"state": "prepared" | "committed" | "aborted" | "unknown"}."""
        with self._lock:
            return {"state": self.states.get(transaction_id, "unknown")}

    def payload(self, transaction_id: str) -> Any:
        """The payload this transaction was prepared with; KeyError if it was never prepared here."""
        with self._lock:
            if self._db is None:
                return self._payloads[transaction_id]
            row = self._db.execute("SELECT payload FROM transactions WHERE id = ?", (transaction_id,)).fetchone()
            if row is None or row[0] is None:
                raise KeyError(transaction_id)
            return json.loads(row[0])

    def prepare(self, transaction_id: str, payload: Any = None) -> dict:
        with self._lock:
            state = self.states.get(transaction_id)
            if state == "prepared":
                return {"vote": "yes"}
            if state is not None:
                return {"vote": "no", "reason": f"transaction already {state}"}
            if transaction_id in self._preparing:
                return {"vote": "no", "reason": "transaction is already being prepared"}
            self._preparing.add(transaction_id)
        # The user's prepare may be slow (it checks and stages): it runs outside the lock, so other
        # transactions go on meanwhile.
        try:
            try:
                # With a file, the payload must be JSON (it is, over MCP): checked before staging.
                encoded = json.dumps(payload) if self._db is not None else None
                ok, reason = self._prepare(transaction_id, payload)
            except Exception as exc:  # a failing prepare is a no vote, never a crash
                ok, reason = False, f"prepare failed: {exc}"
            with self._lock:
                if transaction_id in self.states:
                    # Aborted while we prepared (the coordinator gave up waiting): undo what was staged.
                    if ok:
                        self._abort(transaction_id)
                    return {"vote": "no", "reason": f"transaction {self.states[transaction_id]} while preparing"}
                if ok:
                    try:
                        self._record(transaction_id, "prepared", encoded)
                    except Exception as exc:  # a vote that could not be made durable is no promise
                        self._abort(transaction_id)
                        return {"vote": "no", "reason": f"could not record the vote: {exc}"}
                    if self._db is None:
                        self._payloads[transaction_id] = payload
                    return {"vote": "yes"}
                self._record(transaction_id, "aborted")
                return {"vote": "no", "reason": reason or "refused"}
        finally:
            with self._lock:
                self._preparing.discard(transaction_id)

    def commit(self, transaction_id: str) -> dict:
        # Decisions hold the lock through the callback, so a commit and an abort of the same
        # transaction cannot interleave.
        with self._lock:
            state = self.states.get(transaction_id)
            if state == "committed":
                return {"state": "committed"}
            if state != "prepared":
                raise ValueError(f"cannot commit transaction {transaction_id!r}: it is {state or 'unknown'} here")
            self._commit(transaction_id)
            self._record(transaction_id, "committed")
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
            # Also recorded when unknown here: a prepare arriving later (or still running) then votes no.
            self._record(transaction_id, "aborted")
            return {"state": "aborted"}


def transactional(mcp: Any, *, prepare: PrepareFn, commit: DecisionFn, abort: DecisionFn,
                  path: Optional[str] = None) -> TransactionBook:
    """Registers tx_prepare, tx_commit, tx_abort and tx_status on a FastMCP server; returns the book
    (kept in the SQLite file at path when given, else in memory)."""
    book = TransactionBook(prepare, commit, abort, path=path)

    @mcp.tool(name="tx_prepare", description="mcpopt two-phase commit: prepare a transaction and vote")
    def tx_prepare(transaction_id: str, payload: Any = None) -> dict:
        return book.prepare(transaction_id, payload)

    @mcp.tool(name="tx_commit", description="mcpopt two-phase commit: commit a prepared transaction (idempotent)")
    def tx_commit(transaction_id: str) -> dict:
        return book.commit(transaction_id)

    @mcp.tool(name="tx_abort", description="mcpopt two-phase commit: abort a transaction (idempotent)")
    def tx_abort(transaction_id: str) -> dict:
        return book.abort(transaction_id)

    # Read-only but changing over time: not idempotent, so a caching gateway never keeps the answer.
    @mcp.tool(name="tx_status", description="mcpopt two-phase commit: a transaction's state here",
              annotations={"readOnlyHint": True, "idempotentHint": False})
    def tx_status(transaction_id: str) -> dict:
        return book.status(transaction_id)

    return book
