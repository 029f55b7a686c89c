"""An MCP server on the official Python SDK's `MCPServer` whose tool asks the client for input
(a `Resolve` dependency returning `Elicit`), for the gateway's era-bridging checks. In a
handshake-era session the SDK sends the client an `elicitation/create` request during the call;
in a modern-era one it answers `input_required` (with `inputRequests` and a sealed
`requestState`) and the client retries.

usage: elicit_server.py     (stdio; the era is the client's choice)
"""
from typing import Annotated

from pydantic import BaseModel

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve

server = MCPServer("elicit-server")


class Name(BaseModel):
    name: str


def ask() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


@server.tool()
async def ask_name(who: Annotated[Name, Resolve(ask)]) -> str:
    """Asks the client for a name and greets it."""
    return f"hello {who.name}"


if __name__ == "__main__":
    server.run()
