"""The participant helper on a real FastMCP server, driven through FastMCP's own client."""
import asyncio
import json
import threading

import pytest

fastmcp = pytest.importorskip("fastmcp")
from fastmcp import Client, FastMCP  # noqa: E402

from mcpopt.participant import TransactionBook, transactional  # noqa: E402


def make_server():
    mcp = FastMCP("inventory")
    stock = {"apples": 5}
    staged = {}

    def prepare(tx, payload):
        if payload["count"] > stock["apples"]:
            return False, "not enough apples"
        staged[tx] = payload["count"]
        return True, None

    def commit(tx):
        stock["apples"] -= staged.pop(tx)

    book = transactional(mcp, prepare=prepare, commit=commit, abort=lambda tx: staged.pop(tx, None))
    return mcp, stock, book


async def call(client, tool, **args):
    result = await client.call_tool(tool, args, raise_on_error=False)
    if result.is_error:
        return {"error": result.content[0].text}
    return result.structured_content or json.loads(result.content[0].text)


def test_prepare_commit_and_idempotence():
    mcp, stock, book = make_server()

    async def run():
        async with Client(mcp) as client:
            names = {t.name for t in await client.list_tools()}
            assert {"tx_prepare", "tx_commit", "tx_abort"} <= names
            assert (await call(client, "tx_prepare", transaction_id="t1", payload={"count": 2})) == {"vote": "yes"}
            assert (await call(client, "tx_commit", transaction_id="t1")) == {"state": "committed"}
            assert (await call(client, "tx_commit", transaction_id="t1")) == {"state": "committed"}  # repeated after a crash
            assert stock["apples"] == 3
            no = await call(client, "tx_prepare", transaction_id="t2", payload={"count": 99})
            assert no == {"vote": "no", "reason": "not enough apples"}
            assert "error" in await call(client, "tx_commit", transaction_id="t2")
            assert (await call(client, "tx_abort", transaction_id="t2")) == {"state": "aborted"}
            assert "error" in await call(client, "tx_commit", transaction_id="never-prepared")
            assert "error" in await call(client, "tx_abort", transaction_id="t1")  # committed stays committed

    asyncio.run(run())
    assert book.states == {"t1": "committed", "t2": "aborted"}


def test_failing_prepare_votes_no():
    mcp = FastMCP("broken")

    def prepare(tx, payload):
        raise RuntimeError("disk full")

    transactional(mcp, prepare=prepare, commit=lambda tx: None, abort=lambda tx: None)

    async def run():
        async with Client(mcp) as client:
            vote = await call(client, "tx_prepare", transaction_id="t", payload=None)
            assert vote["vote"] == "no" and "disk full" in vote["reason"]

    asyncio.run(run())


def make_durable_server(path):
    """A participant whose commit applies the payload found in the book (as a restarted process must)."""
    mcp = FastMCP("ledger")
    applied = []

    def prepare(tx, payload):
        if payload.get("amount", 0) < 0:
            return False, "negative amount"
        return True, None

    book = transactional(mcp, prepare=prepare, commit=lambda tx: applied.append((tx, book.payload(tx))),
                         abort=lambda tx: None, path=str(path))
    return mcp, applied, book


def test_durable_book_survives_restart(tmp_path):
    db = tmp_path / "ledger.tx.db"
    mcp, applied, book = make_durable_server(db)

    async def before_crash():
        async with Client(mcp) as client:
            assert "tx_status" in {t.name for t in await client.list_tools()}
            assert (await call(client, "tx_prepare", transaction_id="p", payload={"amount": 7})) == {"vote": "yes"}
            assert (await call(client, "tx_prepare", transaction_id="c", payload={"amount": 1})) == {"vote": "yes"}
            assert (await call(client, "tx_commit", transaction_id="c")) == {"state": "committed"}
            no = await call(client, "tx_prepare", transaction_id="n", payload={"amount": -1})
            assert no == {"vote": "no", "reason": "negative amount"}
            assert (await call(client, "tx_status", transaction_id="p")) == {"state": "prepared"}

    asyncio.run(before_crash())
    assert applied == [("c", {"amount": 1})]
    book.close()  # the process "dies"; nothing of it is reused below

    mcp, applied, book = make_durable_server(db)  # ... and starts again on the same file
    assert book.states == {"p": "prepared", "c": "committed", "n": "aborted"}
    assert book.payload("p") == {"amount": 7}

    async def after_restart():
        async with Client(mcp) as client:
            assert (await call(client, "tx_status", transaction_id="p")) == {"state": "prepared"}
            assert (await call(client, "tx_status", transaction_id="n")) == {"state": "aborted"}
            assert (await call(client, "tx_status", transaction_id="x")) == {"state": "unknown"}
            # The coordinator's commit after the crash is accepted and applies what was staged.
            assert (await call(client, "tx_commit", transaction_id="p")) == {"state": "committed"}
            assert (await call(client, "tx_commit", transaction_id="p")) == {"state": "committed"}
            # Decided before the crash: answered as before.
            assert (await call(client, "tx_commit", transaction_id="c")) == {"state": "committed"}
            assert "error" in await call(client, "tx_abort", transaction_id="c")
            assert (await call(client, "tx_abort", transaction_id="n")) == {"state": "aborted"}
            assert "error" in await call(client, "tx_commit", transaction_id="n")
            again = await call(client, "tx_prepare", transaction_id="n", payload={"amount": 1})
            assert again == {"vote": "no", "reason": "transaction already aborted"}

    asyncio.run(after_restart())
    assert applied == [("p", {"amount": 7})]  # once: the repeated commit did not apply it again
    book.close()

    # A third start sees the commit made after the restart.
    _, applied, book = make_durable_server(db)
    assert book.states == {"p": "committed", "c": "committed", "n": "aborted"}
    assert book.commit("p") == {"state": "committed"} and applied == []
    book.close()


def test_durable_abort_and_unknown_transactions(tmp_path):
    db = str(tmp_path / "book.db")
    aborted = []
    book = TransactionBook(lambda tx, p: (True, None), lambda tx: None, aborted.append, path=db)
    assert book.prepare("a", ["staged"]) == {"vote": "yes"}
    assert book.abort("a") == {"state": "aborted"} and aborted == ["a"]
    assert book.abort("early") == {"state": "aborted"}  # the coordinator gave up before our prepare arrived
    book.close()

    book = TransactionBook(lambda tx, p: (True, None), lambda tx: None, aborted.append, path=db)
    assert book.states == {"a": "aborted", "early": "aborted"}
    assert book.payload("a") == ["staged"]
    assert book.prepare("early", None)["vote"] == "no"  # the late prepare is refused
    with pytest.raises(ValueError):
        book.commit("a")
    with pytest.raises(KeyError):
        book.payload("never")
    assert aborted == ["a"]
    book.close()


def test_abort_while_preparing_undoes_the_staging():
    started, release = threading.Event(), threading.Event()
    staged = set()

    def prepare(tx, payload):
        staged.add(tx)
        started.set()
        assert release.wait(5)
        return True, None

    book = TransactionBook(prepare, lambda tx: None, staged.discard)
    votes = []
    worker = threading.Thread(target=lambda: votes.append(book.prepare("slow", 1)))
    worker.start()
    assert started.wait(5)
    assert book.status("slow") == {"state": "unknown"}  # nothing is promised while prepare runs
    assert book.abort("slow") == {"state": "aborted"}   # the coordinator timed out
    release.set()
    worker.join(5)
    assert not worker.is_alive()
    assert votes[0]["vote"] == "no" and staged == set()
    assert book.states == {"slow": "aborted"}
