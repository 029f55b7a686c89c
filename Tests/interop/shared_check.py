"""Two `mcpopt serve` gateways sharing one Redis behave as one cache, judged by the official MCP
Python SDK client: a value read through one gateway is served by the other from the shared
cache (its own server does not even have it), a write through one makes the other stop serving
the old value, and both keep answering while Redis is down.

usage: shared_check.py MCPOPT
Prints one line per check and "shared cache: N passed, M failed"; exits 1 on failure.
"""
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mcp.client.streamable_http import streamable_http_client

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
from interop_util import check, free_port, session_for, summary, wait_listening


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1


async def call(port: int, tool: str, args: dict, era: str = "modern") -> str:
    async def run(session):
        r = await session.call_tool(tool, args)
        return r.content[0].text if r.content else ""
    return await session_for(streamable_http_client(f"http://127.0.0.1:{port}/mcp"), era, run)


async def eventually(condition, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def main() -> None:
    mcpopt = sys.argv[1]
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis_port = free_port()
    procs = []

    def start_redis():
        # setpriv: redis-server (same pid) gets a parent-death signal, so it ends with this script.
        p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(redis_port, 10)
        return p

    redis = start_redis()
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "mcpServers": {"kv": {"command": str(BIN / "python"), "args": [str(HERE / "kv_server.py"), "--name", "kv"], "trustAnnotations": True}},
            "caching": {"distributed": f"redis://127.0.0.1:{redis_port}", "coherenceTimeout": "1s", "tools": {"reads_served": False}},
        }
        path = Path(tmp) / "mcpopt.json"
        path.write_text(json.dumps(config))
        ports = [free_port(), free_port()]
        try:
            for port in ports:
                procs.append(subprocess.Popen(["setpriv", "--pdeathsig", "KILL", mcpopt, "serve", "--config", str(path), "--listen", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL))
            check("both gateways listen", all(wait_listening(p) for p in ports))
            up = await eventually(lambda: asyncio.sleep(0, all(metric(p, "mcpopt_l2_up") == 1 for p in ports)), 10)
            check("both gateways reach Redis", up, [metric(p, "mcpopt_l2_up") for p in ports])
            g1, g2 = ports
            await call(g1, "put", {"key": "k", "value": "v1"})
            check("read through gateway 1", await call(g1, "get", {"key": "k"}) == "v1")
            # Gateway 2's own server has no "k": v1 can only come from gateway 1's fill.
            got = await eventually(lambda: _eq(call(g2, "get", {"key": "k"}, "legacy"), "v1"))
            check("gateway 2 serves gateway 1's result from the shared cache", got)
            check("gateway 2 counts an L2 hit", metric(g2, "mcpopt_l2_hits_total") >= 1, metric(g2, "mcpopt_l2_hits_total"))
            await call(g1, "put", {"key": "k", "value": "v2"})
            gone = await eventually(lambda: _ne(call(g2, "get", {"key": "k"}), "v1"), 5)
            check("a write through gateway 1 stops gateway 2 serving the old value", gone)
            check("gateway 2 received the invalidation", metric(g2, "mcpopt_l2_invalidations_received_total") >= 1)
            redis.kill()
            redis.wait()
            try:
                answers = [await call(g1, "get", {"key": f"x{i}"}) for i in range(5)] + [await call(g2, "get", {"key": "k"})]
                check("with Redis down both gateways still answer", len(answers) == 6)
            except Exception as e:  # noqa: BLE001
                check("with Redis down both gateways still answer", False, repr(e))
            redis = start_redis()
            back = await eventually(lambda: asyncio.sleep(0, all(metric(p, "mcpopt_l2_up") == 1 for p in ports)), 15)
            check("both gateways reconnect when Redis returns", back)
            # The demo's second instance: a cold L1 served by what the first put in Redis.
            run = subprocess.run([mcpopt, "demo", "--servers", "7", "--requests", "300", "--seed", "5", "--json",
                                  "--shared-cache", f"redis://127.0.0.1:{redis_port}", "--report", str(Path(tmp) / "r.html")],
                                 capture_output=True, text=True, timeout=300)
            d = json.loads(run.stdout) if run.returncode == 0 else None
            second = (d or {}).get("secondInstance") or {}
            check("demo --shared-cache: a second instance replays the trace", second.get("calls") == (d or {}).get("traceCalls"), run.stderr[-800:])
            check("demo --shared-cache: the second instance is served from L2",
                  (second.get("l2") or {}).get("hits", 0) > 0 and second.get("hitRate", 0) > d["mcpopt"]["hitRate"], second)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
            redis.kill()
            redis.wait()
    sys.exit(summary("shared cache"))


async def _eq(coro, value) -> bool:
    return (await coro) == value


async def _ne(coro, value) -> bool:
    return (await coro) != value


asyncio.run(main())
