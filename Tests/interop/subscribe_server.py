"""A low-level MCP server (the official Python SDK's `Server`) that supports resource
subscriptions in both protocol eras, for the gateway's tests (FastMCP implements neither
`resources/subscribe` nor `subscriptions/listen`):

- one resource `sub://doc` (`sub://<prefix>/doc` with --prefix);
- `touch` changes it and tells who subscribed: a handshake-era session that called
  `resources/subscribe` (`notifications/resources/updated`), and modern-era
  `subscriptions/listen` streams that named the URI;
- `subscribers`: how many subscribe to it now (handshake sessions plus open listen streams);
- `add_tool` adds a tool (`extra_<n>`) and announces the list change (to the handshake session,
  and to listen streams that asked for tool list changes).

Tool names get the prefix too (`<prefix>_touch`), so two of these servers can sit behind one
gateway without their names colliding.

usage: subscribe_server.py [--prefix P] [--http PORT]
  stdio by default; --http PORT: Streamable HTTP on 127.0.0.1:PORT at /mcp (0 picks a free
  port, printed as "PORT <n>"). The era is the client's choice.
"""
import argparse

import anyio

import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated, ToolsListChanged

parser = argparse.ArgumentParser()
parser.add_argument("--prefix", default="")
parser.add_argument("--http", type=int, metavar="PORT")
args = parser.parse_args()
P = args.prefix + "_" if args.prefix else ""
URI = f"sub://{args.prefix}/doc" if args.prefix else "sub://doc"
version = 0
extra_tools = []
# uri -> the session that subscribed (request contexts wrap sessions anew each time, so the
# session is kept, not used as a key).
subscribed = {}
# Listen streams open now that name URI.
listening = 0
bus = InMemorySubscriptionBus()
listen_handler = ListenHandler(bus)


async def listen(ctx, params):
    global listening
    names = URI in (params.notifications.resource_subscriptions or [])
    listening += names
    try:
        return await listen_handler(ctx, params)
    finally:
        listening -= names


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


def tool(name, description):
    return types.Tool(name=name, description=description, inputSchema={"type": "object", "properties": {}})


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[
        tool(P + "touch", f"Changes {URI} and notifies its subscribers"),
        tool(P + "subscribers", f"How many subscribe to {URI}"),
        tool(P + "add_tool", "Adds a tool and announces the list change"),
    ] + [tool(name, "added at run time") for name in extra_tools])


async def call_tool(ctx, params):
    global version
    name = params.name[len(P):] if params.name.startswith(P) else params.name
    if name == "touch":
        version += 1
        if URI in subscribed:
            await subscribed[URI].send_resource_updated(URI)
        await bus.publish(ResourceUpdated(uri=URI))
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"version {version}")])
    if name == "add_tool":
        extra_tools.append(f"{P}extra_{len(extra_tools) + 1}")
        try:
            await ctx.session.send_tool_list_changed()
        except Exception:  # noqa: BLE001 - a modern-era session announces on listen streams only
            pass
        await bus.publish(ToolsListChanged())
        return types.CallToolResult(content=[types.TextContent(type="text", text=extra_tools[-1])])
    if name == "subscribers":
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(int(URI in subscribed) + listening))])
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"added at run time: {name}")])


server = Server("subscribe-server", on_list_resources=list_resources, on_read_resource=read_resource,
                on_subscribe_resource=subscribe, on_unsubscribe_resource=unsubscribe,
                on_subscriptions_listen=listen, on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def serve_http() -> None:
    import socket

    import uvicorn
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.http))
    sock.listen(64)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    app = server.streamable_http_app()
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    if args.http is None:
        anyio.run(main)
    else:
        serve_http()
