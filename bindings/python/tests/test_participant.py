"""The participant helper on a real FastMCP server, driven through FastMCP's own client."""
import asyncio
import json

import pytest

fastmcp = pytest.importorskip("fastmcp")
from fastmcp import Client, FastMCP  # noqa: E402

from mcpopt.participant import transactional  # noqa: E402


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
