"""The official MCP Python SDK as a reference client: lists a stdio server's tools and calls
one, printing what it got as JSON. Tests compare mcpopt's results with these.

usage: sdk_client.py TOOL ARGUMENTS_JSON -- COMMAND [ARGS...]      (a stdio server)
       sdk_client.py TOOL ARGUMENTS_JSON -- http://HOST:PORT/PATH     (a Streamable HTTP server)
"""
import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


async def main() -> None:
    split = sys.argv.index("--")
    tool, arguments = sys.argv[1], json.loads(sys.argv[2])
    command = sys.argv[split + 1:]
    if command[0].startswith("http"):
        transport = streamable_http_client(command[0])
    else:
        transport = stdio_client(StdioServerParameters(command=command[0], args=command[1:]))
    async with transport as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool(tool, arguments)
    print(json.dumps({
        "tools": sorted(t.name for t in tools.tools),
        "content": [c.model_dump(mode="json", exclude_none=True) for c in result.content],
        "isError": bool(result.is_error),
    }, sort_keys=True))


asyncio.run(main())
