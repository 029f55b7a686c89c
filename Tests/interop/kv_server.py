"""A FastMCP key-value server over stdio for the engine's tests: annotated reads and writes, a
slow read (for merging), a resource template and a prompt. Counts the reads it serves, so a
test can tell a cache hit (no read) from a call that reached the server.

usage: kv_server.py [--name NAME] [--crash-once MARKER] [--slow-every N --slow-ms MS]
  --crash-once: the first get or put exits the process (before answering) and creates MARKER;
                a server started again with MARKER present behaves.
  --slow-every N --slow-ms MS: every Nth whoami takes MS milliseconds (a tail to hedge).
"""
import asyncio
import os
import sys

import mcp.types as types
from fastmcp import Context, FastMCP

name = sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else "kv"
mcp = FastMCP(name)
store: dict[str, str] = {}
reads = 0
marker = sys.argv[sys.argv.index("--crash-once") + 1] if "--crash-once" in sys.argv else None
slow_every = int(sys.argv[sys.argv.index("--slow-every") + 1]) if "--slow-every" in sys.argv else 0
slow_ms = int(sys.argv[sys.argv.index("--slow-ms") + 1]) if "--slow-ms" in sys.argv else 0
whoami_calls = 0


def maybe_crash() -> None:
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)

READ = {"readOnlyHint": True, "idempotentHint": True}


@mcp.tool(annotations=READ)
def get(key: str) -> str:
    """The value of key ("" when unset)."""
    global reads
    maybe_crash()
    reads += 1
    return store.get(key, "")


@mcp.tool(annotations={"readOnlyHint": False, "destructiveHint": False})
def put(key: str, value: str) -> str:
    """Sets key to value."""
    maybe_crash()
    store[key] = value
    return "ok"


@mcp.tool(annotations={"readOnlyHint": False, "idempotentHint": True, "destructiveHint": False})
def set_value(key: str, value: str) -> str:
    """Sets key to value (idempotent: the same call twice leaves the same state)."""
    store[key] = value
    return "ok"


@mcp.tool(annotations={"readOnlyHint": False})
async def log_twice(message: str, ctx: Context) -> str:
    """Logs message at info and at warning."""
    await ctx.info(f"info: {message}")
    await ctx.warning(f"warning: {message}")
    return "logged"


waits_cancelled = 0


@mcp.tool(annotations={"readOnlyHint": False})
async def wait_ms(ms: int) -> str:
    """Waits ms milliseconds; counts the waits cancelled before their end."""
    global waits_cancelled
    try:
        await asyncio.sleep(ms / 1000)
    except asyncio.CancelledError:
        waits_cancelled += 1
        raise
    return "waited"


@mcp.tool(annotations={"readOnlyHint": True, "idempotentHint": False})
def cancelled_waits() -> int:
    """How many wait_ms calls were cancelled (not idempotent: never cached)."""
    return waits_cancelled


@mcp.tool(annotations={"readOnlyHint": False})
async def count_up(n: int, ctx: Context) -> str:
    """Reports progress n times, then answers."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i}")
        await asyncio.sleep(0.01)
    return f"counted to {n}"


@mcp.tool(annotations=READ)
async def slow_get(key: str, ms: int) -> str:
    """Like get, after ms milliseconds."""
    global reads
    reads += 1
    await asyncio.sleep(ms / 1000)
    return store.get(key, "")


@mcp.tool(annotations=READ)
def reads_served() -> int:
    """How many reads reached this server."""
    return reads


@mcp.tool(annotations=READ)
async def whoami() -> str:
    """This server's name (to see which replica answered)."""
    global whoami_calls
    whoami_calls += 1
    if slow_every and whoami_calls % slow_every == 0:
        await asyncio.sleep(slow_ms / 1000)
    return name


@mcp.tool(annotations={"readOnlyHint": False})
async def ask_client(question: str, ctx: Context) -> str:
    """Asks the client's model (sampling/createMessage) and returns its answer."""
    result = await ctx.session.create_message(
        messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=question))], max_tokens=50,
        related_request_id=ctx.request_id)  # over HTTP: on the stream of this call
    return f"the model said: {result.content.text}"


@mcp.tool(annotations={"readOnlyHint": False})
async def client_roots(ctx: Context) -> str:
    """The client's roots (roots/list), comma-separated."""
    roots = await ctx.session.list_roots()
    return ",".join(str(r.uri) for r in roots.roots)


@mcp.tool(annotations={"readOnlyHint": False})
async def add_tool(tool_name: str, ctx: Context) -> str:
    """Adds a tool named tool_name (answering its own name) and announces the new list."""
    def made() -> str:
        return tool_name
    mcp.tool(name=tool_name, annotations=READ)(made)
    await ctx.send_notification(types.ToolListChangedNotification())
    return "added"


@mcp.resource("kv://{key}")
def value_of(key: str) -> str:
    global reads
    reads += 1
    return store.get(key, "")


@mcp.prompt
def describe(key: str) -> str:
    return f"Describe the value stored under {key}."


mcp.run(show_banner=False, log_level="warning")
