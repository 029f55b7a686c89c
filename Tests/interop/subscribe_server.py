"""A low-level MCP server (the official Python SDK's `Server`) that supports resource
subscriptions, for the gateway's tests (FastMCP does not implement resources/subscribe):
one resource `sub://doc`, a tool `touch` that changes it and tells the client if it subscribed
(`notifications/resources/updated`), and `subscribers` (1 while subscribed, else 0).

usage: subscribe_server.py     (stdio)
"""
import anyio

import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

URI = "sub://doc"
version = 0
# uri -> the session that subscribed (request contexts wrap sessions anew each time, so the
# session is kept, not used as a key).
subscribed = {}


async def list_resources(ctx, params):
    return types.ListResourcesResult(resources=[types.Resource(uri=URI, name="doc")])


async def read_resource(ctx, params):
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=URI, text=f"version {version}")])


async def subscribe(ctx, params):
    subscribed[str(params.uri)] = ctx.session
    return types.EmptyResult()


async def unsubscribe(ctx, params):
    subscribed.pop(str(params.uri), None)
    return types.EmptyResult()


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[
        types.Tool(name="touch", description="Changes sub://doc and notifies its subscribers", inputSchema={"type": "object", "properties": {}}),
        types.Tool(name="subscribers", description="How many sessions subscribe to sub://doc", inputSchema={"type": "object", "properties": {}}),
    ])


async def call_tool(ctx, params):
    global version
    if params.name == "touch":
        version += 1
        if URI in subscribed:
            await subscribed[URI].send_resource_updated(URI)
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"version {version}")])
    return types.CallToolResult(content=[types.TextContent(type="text", text=str(int(URI in subscribed)))])


server = Server("subscribe-server", on_list_resources=list_resources, on_read_resource=read_resource,
                on_subscribe_resource=subscribe, on_unsubscribe_resource=unsubscribe,
                on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
