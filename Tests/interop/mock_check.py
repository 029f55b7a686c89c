"""`mcpopt mock-server` judged by real clients: the official MCP Python SDK (both protocol eras,
stdio and Streamable HTTP) and the FastMCP client list its tools with their annotations and call
them; replicas answer alike; injected faults happen (errors, a crash); a run of `mcpopt demo`
prints consistent figures and writes its report.

usage: mock_check.py MCPOPT
Prints one line per check and "mock-server: N passed, M failed"; exits 1 on failure.
"""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from interop_util import check, free_port, session_for, summary, wait_listening


async def files_checks(transport, era: str, label: str):
    async def run(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        check(f"{label}: tools listed", set(tools) == {"read_file", "list_dir", "write_file"}, sorted(tools))
        ann = tools["read_file"].annotations
        check(f"{label}: a read is read-only and idempotent", ann is not None and ann.read_only_hint is True and ann.idempotent_hint is True, ann)
        check(f"{label}: a write is not read-only", tools["write_file"].annotations.read_only_hint is False, tools["write_file"].annotations)
        r = await session.call_tool("read_file", {"path": "/src/a.swift"})
        text = r.content[0].text
        check(f"{label}: call answers its deterministic text", text.startswith("read_file(/src/a.swift): ") and len(text) >= 1000 and not r.is_error, text[:80])
        r2 = await session.call_tool("read_file", {"path": "/src/a.swift"})
        check(f"{label}: same argument, same answer", r2.content[0].text == text)
        try:
            r = await session.call_tool("read_file", {})
            check(f"{label}: a missing argument is -32602", False, r)
        except Exception as e:
            check(f"{label}: a missing argument is -32602", "-32602" in repr(e) or getattr(e, "code", None) == -32602 or "needs the string argument" in repr(e), repr(e))
        return text
    return await session_for(transport, era, run)


async def main() -> None:
    mcpopt = sys.argv[1]
    texts = []
    for era in ("legacy", "modern"):
        t = stdio_client(StdioServerParameters(command=mcpopt, args=["mock-server", "--preset", "files", "--name", "files-a"]))
        texts.append(await asyncio.wait_for(files_checks(t, era, f"stdio {era}"), 60))
    port = free_port()
    server = subprocess.Popen([mcpopt, "mock-server", "--preset", "files", "--name", "files-b", "--http", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        for era in ("legacy", "modern"):
            texts.append(await asyncio.wait_for(files_checks(streamable_http_client(f"http://127.0.0.1:{port}/mcp"), era, f"http {era}"), 60))
        from fastmcp import Client
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            r = await client.call_tool("list_dir", {"path": "/src"})
            check("http fastmcp: FastMCP client calls", r.content[0].text.startswith("list_dir(/src): "), r)
    finally:
        server.terminate()
        server.wait(10)
    check("replicas (stdio and HTTP) answer alike", len(set(texts)) == 1, [t[:40] for t in texts])

    # Faults: every call an error; a crash after 2 calls.
    async def errors(session):
        r = None
        try:
            r = await session.call_tool("get_record", {"id": "1"})
        except Exception as e:
            return repr(e)
        return f"no error: {r}"
    t = stdio_client(StdioServerParameters(command=mcpopt, args=["mock-server", "--preset", "records", "--error-rate", "1"]))
    outcome = await asyncio.wait_for(session_for(t, "legacy", errors), 30)
    check("--error-rate 1: every call is an error", "injected fault" in outcome, outcome)

    proc = subprocess.Popen([mcpopt, "mock-server", "--preset", "records", "--crash-after", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lines = [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}]
    lines += [{"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call", "params": {"name": "get_record", "arguments": {"id": str(i)}}} for i in range(3)]
    out, _ = proc.communicate("".join(json.dumps(l) + "\n" for l in lines).encode(), timeout=30)
    answered = [json.loads(l)["id"] for l in out.decode().splitlines() if l.strip()]
    check("--crash-after 2: exits with status 3 when the third call arrives", proc.returncode == 3 and 12 not in answered, (proc.returncode, answered))

    # The demo, small: both runs replay the same calls; the figures are consistent.
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        trace = Path(tmp) / "trace.jsonl"
        run = subprocess.run([mcpopt, "demo", "--servers", "7", "--requests", "400", "--seed", "3", "--json", "--report", str(report), "--save-trace", str(trace)],
                             capture_output=True, text=True, timeout=300)
        check("demo: exits 0", run.returncode == 0, run.stderr[-2000:])
        try:
            d = json.loads(run.stdout)
        except ValueError:
            d = None
        check("demo: prints JSON", d is not None, run.stdout[:500])
        if d:
            n, m = d["naive"], d["mcpopt"]
            check("demo: both runs replay every call of the trace", n["calls"] == m["calls"] == d["traceCalls"] >= 400, (n["calls"], m["calls"], d["traceCalls"]))
            check("demo: the naive client uses one server per kind, the engine more", len(n["perServer"]) == 7 and len(m["perServer"]) >= 7, (n["perServer"], m["perServer"]))
            check("demo: the engine answers some calls from its cache", 0 < m["hitRate"] < 1 and n["hitRate"] == 0, (n["hitRate"], m["hitRate"]))
            check("demo: reductions follow from the latencies", abs(d["reduction"]["mean"] - (1 - m["latencyMs"]["mean"] / n["latencyMs"]["mean"])) < 1e-9, d["reduction"])
            names = {c["name"] for c in d["checks"]}
            check("demo: target rows computed", {"mean latency reduction", "p99 latency reduction", "availability with faults", "routing decision p99"} <= names, names)
            check("demo: the engine's request count matches", d["engineMetrics"]["system"]["requests"] == m["calls"], d["engineMetrics"]["system"]["requests"])
        html = report.read_text() if report.exists() else ""
        check("demo: HTML report with its charts", html.startswith("<!doctype html>") and html.count("<svg") == 3 and "polyline" in html, len(html))
        lines = trace.read_text().splitlines() if trace.exists() else []
        check("demo: --save-trace writes the replayed calls", d is not None and len(lines) == d["traceCalls"], len(lines))
        # Replaying the saved trace replays the same calls.
        again = subprocess.run([mcpopt, "demo", "--servers", "7", "--trace", str(trace), "--seed", "3", "--json", "--report", str(report)],
                               capture_output=True, text=True, timeout=300)
        d2 = json.loads(again.stdout) if again.returncode == 0 else None
        check("demo: --trace replays a recorded trace", d2 is not None and d2["traceCalls"] == len(lines), again.stderr[-1000:])
        bad = Path(tmp) / "bad.jsonl"
        bad.write_text('{"tool": "read_file", "arguments": {"path": "/a"}}\nnot json\n')
        broken = subprocess.run([mcpopt, "demo", "--trace", str(bad)], capture_output=True, text=True, timeout=60)
        check("demo: a broken trace is a clear error", broken.returncode != 0 and "line 2" in broken.stderr, broken.stderr[-500:])
    sys.exit(summary("mock-server"))


asyncio.run(main())
