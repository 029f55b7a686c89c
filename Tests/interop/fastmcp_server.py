"""A FastMCP server over Streamable HTTP for interoperability tests, on a loopback port it picks
itself (printed as "PORT <n>" once listening). It serves both protocol eras: the client's
MCP-Protocol-Version header picks one.

usage: fastmcp_server.py [--json] [--tls CERT KEY [--client-ca CA]] [--keep-alive SECONDS]
  --json: application/json responses instead of SSE
  --tls: HTTPS with this certificate and key (PEM; Tests/interop/make_test_certs.sh makes them)
  --client-ca: and clients must present a certificate this CA signed (mutual TLS)
  --keep-alive: how long an idle connection stays open (uvicorn's default: 5 s)
"""
import asyncio
import socket
import sys

from fastmcp import Context, FastMCP
from parent_watch import exit_with_parent

mcp = FastMCP("interop-fastmcp")


@mcp.tool(annotations={"readOnlyHint": True, "idempotentHint": True})
def add(a: int, b: int) -> int:
    """Add two ints."""
    return a + b


@mcp.tool
async def slow(n: int, ctx: Context, wait_ms: int = 0) -> str:
    """Reports progress n times, after `wait_ms` (so that identical calls can be merged)."""
    if wait_ms:
        await asyncio.sleep(wait_ms / 1000)
    for i in range(n):
        await ctx.report_progress(i + 1, n)
    return f"done {n}"


@mcp.tool
async def ask_client(question: str, ctx: Context) -> str:
    """Asks the client's model (sampling/createMessage): a server-to-client request."""
    import mcp.types as types
    result = await ctx.session.create_message(
        messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=question))], max_tokens=50,
        related_request_id=ctx.request_id)  # over HTTP: on the stream of this call
    return f"the model said: {result.content.text}"


@mcp.tool(annotations={"readOnlyHint": True, "idempotentHint": True})
async def chatty(tag: str, ctx: Context, wait_ms: int = 0) -> str:
    """After `wait_ms`, logs `tag` at debug, info and warning: log messages about this call,
    on its own stream (a modern-era client gets those at or above the level it asked for)."""
    if wait_ms:
        await asyncio.sleep(wait_ms / 1000)
    await ctx.debug(f"debug {tag}")
    await ctx.info(f"info {tag}")
    await ctx.warning(f"warning {tag}")
    return f"said {tag}"


_background = set()


@mcp.tool
async def touch_later(uri: str, ctx: Context) -> str:
    """Reports `uri` updated 200 ms after answering: a notification that belongs to no request,
    so it travels on the session's GET stream."""
    session = ctx.session

    async def later():
        await asyncio.sleep(0.2)
        await session.send_resource_updated(uri)
    task = asyncio.get_running_loop().create_task(later())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return "scheduled"


@mcp.resource("data://greeting")
def greeting() -> str:
    return "hello from fastmcp"


def main() -> None:
    exit_with_parent()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    tls = {}  # uvicorn's settings
    if "--tls" in sys.argv:
        at = sys.argv.index("--tls")
        tls = {"ssl_certfile": sys.argv[at + 1], "ssl_keyfile": sys.argv[at + 2]}
        if "--client-ca" in sys.argv:
            import ssl
            tls |= {"ssl_ca_certs": sys.argv[sys.argv.index("--client-ca") + 1], "ssl_cert_reqs": ssl.CERT_REQUIRED}
    if "--keep-alive" in sys.argv:
        tls["timeout_keep_alive"] = float(sys.argv[sys.argv.index("--keep-alive") + 1])
    asyncio.run(mcp.run_http_async(show_banner=False, host="127.0.0.1", port=sock.getsockname()[1], path="/mcp",
                                   json_response="--json" in sys.argv, sockets=[sock], log_level="warning", uvicorn_config=tls))


main()
