"""A FastMCP two-phase-commit participant (docs/COORDINATION.md) for the coordinator's tests: a tiny
key-value store that changes only through transactions, kept on disk so it survives a restart.

usage: participant_server.py --name NAME --state DIR [--http PORT] [--vote-no] [--prepare-delay-ms N]
  tx_prepare's payload is {"key": string, "value": any JSON}; anything else votes no.
  commit sets key to value in DIR/NAME.json (rewritten atomically on every commit); the
  transaction book (prepared/committed/aborted, payloads) is DIR/NAME.tx.db.
  tools: tx_prepare, tx_commit, tx_abort, tx_status, kv_get(key) -> {"value": ... or null}.
  --http PORT: Streamable HTTP on 127.0.0.1:PORT at /mcp (0 picks a free port), printing
               "PORT <n>" once listening; without it, stdio.
  --vote-no: every prepare votes no ("configured to refuse").
  --prepare-delay-ms N: every prepare first sleeps N ms (to make a coordinator time out).
"""
import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python"))

from fastmcp import FastMCP  # noqa: E402
from mcpopt.participant import transactional  # noqa: E402
from parent_watch import exit_with_parent  # noqa: E402

parser = argparse.ArgumentParser(description="A two-phase-commit participant key-value store over MCP.")
parser.add_argument("--name", required=True)
parser.add_argument("--state", required=True, help="directory for NAME.json and NAME.tx.db")
parser.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT/mcp")
parser.add_argument("--vote-no", action="store_true")
parser.add_argument("--prepare-delay-ms", type=int, default=0, metavar="N")
args = parser.parse_args()

os.makedirs(args.state, exist_ok=True)
store_path = os.path.join(args.state, f"{args.name}.json")
store: dict = {}
if os.path.exists(store_path):
    with open(store_path) as f:
        store = json.load(f)


def save_store() -> None:
    """Writes the store so that a crash leaves either the old file or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(dir=args.state, prefix=f".{args.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(store, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, store_path)
    except BaseException:
        os.unlink(tmp)
        raise
    dir_fd = os.open(args.state, os.O_RDONLY)  # the rename itself is durable once the directory is synced
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def prepare(tx, payload):
    if args.prepare_delay_ms:
        time.sleep(args.prepare_delay_ms / 1000)  # a sync tool runs on a worker thread: the server stays responsive
    if args.vote_no:
        return False, "configured to refuse"
    if not (isinstance(payload, dict) and set(payload) == {"key", "value"} and isinstance(payload["key"], str)):
        return False, 'payload must be an object {"key": string, "value": any JSON value}'
    return True, None  # nothing to stage: the book keeps the payload until commit


def commit(tx):
    # Setting a key is idempotent, so running again after a crash before the book recorded it is harmless.
    payload = book.payload(tx)
    store[payload["key"]] = payload["value"]
    save_store()


mcp = FastMCP(args.name)
book = transactional(mcp, prepare=prepare, commit=commit, abort=lambda tx: None,
                     path=os.path.join(args.state, f"{args.name}.tx.db"))


@mcp.tool(annotations={"readOnlyHint": True, "idempotentHint": False})  # changes with commits: never cached
def kv_get(key: str) -> dict:
    """The committed value of key (null when unset)."""
    return {"value": store.get(key)}


if args.http is None:
    mcp.run(show_banner=False, log_level="warning")
else:
    exit_with_parent()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.http))
    sock.listen(64)
    port = sock.getsockname()[1]
    print(f"PORT {port}", flush=True)
    asyncio.run(mcp.run_http_async(show_banner=False, host="127.0.0.1", port=port, path="/mcp",
                                   sockets=[sock], log_level="warning"))
