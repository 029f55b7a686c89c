"""The gateway judged by real clients: the official MCP Python SDK (both protocol eras) and the
FastMCP client list and call the tools of real servers (mcp-server-time, mcp-server-git, two
FastMCP key-value servers whose tool names collide, one server that cannot start) through
`mcpopt stdio` or `mcpopt serve`, and must get the same results as when they call the servers
directly.

usage: gateway_check.py MCPOPT stdio
       gateway_check.py MCPOPT http [more arguments of `mcpopt serve`, e.g. --busy-poll 200us]
Prints one line per check and "gateway (<transport>): N passed, M failed"; exits 1 on failure.
"""
import asyncio
import json

import mcp.types as types
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from interop_util import check, free_port, session_for, summary

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    (repo / "a.txt").write_text("hello\n")
    subprocess.run(["git", "-C", str(repo), "add", "a.txt"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "first"], check=True, env=env)
    (repo / "b.txt").write_text("untracked\n")
    return repo


def servers(repo: Path, http_subs_port: int, fastmcp_port: int) -> dict:
    kv = str(HERE / "kv_server.py")
    fastmcp = f"http://127.0.0.1:{fastmcp_port}/mcp"
    return {
        # A FastMCP server over HTTP behind a session of each era: its tools log on their call's
        # own stream (ctx.info...), and those messages belong to that call's client.
        "flog_h": {"url": fastmcp, "protocol": "handshake"},
        "flog_m": {"url": fastmcp, "protocol": "modern"},
        "kv": {"command": str(BIN / "python"), "args": [kv, "--name", "kv"], "trustAnnotations": True},
        "kv2": {"command": str(BIN / "python"), "args": [kv, "--name", "kv2"]},
        "kv3": {"command": str(BIN / "python"), "args": [kv, "--name", "kv3"], "stateful": True},
        # A handshake-era session: the only kind in which a server sends requests to the client.
        "ask": {"command": str(BIN / "python"), "args": [kv, "--name", "ask"], "protocol": "handshake"},
        # Resource subscriptions (the SDK's low-level server: FastMCP has none).
        "subs": {"command": str(BIN / "python"), "args": [str(HERE / "subscribe_server.py")], "protocol": "handshake"},
        # The same in the modern era: subscriptions/listen behind the gateway's subscriptions.
        "msubs": {"command": str(BIN / "python"), "args": [str(HERE / "subscribe_server.py"), "--prefix", "m"], "protocol": "modern"},
        # A tool that asks the client for input, behind each era: the gateway bridges the
        # server's way of asking (a request, or input_required) to the client's era.
        "elicit_m": {"command": str(BIN / "python"), "args": [str(HERE / "elicit_server.py")], "protocol": "modern"},
        "elicit_h": {"command": str(BIN / "python"), "args": [str(HERE / "elicit_server.py")], "protocol": "handshake"},
        # And over Streamable HTTP (the listen stream is a POST answered with an event stream).
        "hsubs": {"url": f"http://127.0.0.1:{http_subs_port}/mcp", "protocol": "modern"},
        "time": {"command": str(BIN / "mcp-server-time"), "args": ["--local-timezone", "UTC"]},
        "git": {"command": str(BIN / "mcp-server-git"), "args": ["--repository", str(repo)]},
        "broken": {"command": "/nonexistent/mcp-server"},
    }


def text_of(result) -> list:
    return [c.model_dump(mode="json", exclude_none=True) for c in result.content]


async def direct_results(config: dict, era: str) -> dict:
    """What the real servers answer when called directly."""
    out = {}
    for name, tool, args in [("time", "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}),
                             ("git", "git_status", {"repo_path": config["git"]["args"][1]})]:
        s = config[name]
        params = StdioServerParameters(command=s["command"], args=s["args"])

        async def run(session, tool=tool, args=args):
            return text_of(await session.call_tool(tool, args))
        # mcp-server-time/git are handshake-era servers: call them directly the way they speak.
        out[tool] = await session_for(stdio_client(params), "legacy", run)
    return out


async def through_gateway(transport, era: str, direct: dict, repo: Path, label: str):
    logs = []

    async def on_log(params):
        logs.append(params)

    updates = []
    list_changes = []

    async def on_message(message):
        if type(message).__name__ == "ResourceUpdatedNotification":
            updates.append(str(message.params.uri))
        if type(message).__name__ == "ToolListChangedNotification":
            list_changes.append(message)

    async def eventually(probe, seconds=5.0):
        """Polls `probe` (async) until it is truthy; bounded in time."""
        deadline = time.monotonic() + seconds
        while True:
            value = await probe()
            if value or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.05)

    async def count(tool):
        return (await session_ref[0].call_tool(tool, {})).content[0].text

    session_ref = []

    async def run(session):
        session_ref.append(session)
        tools = sorted(t.name for t in (await session.list_tools()).tools)
        check(f"{label}: real servers' tools are listed", {"convert_time", "get_current_time", "git_status", "git_log"} <= set(tools), tools)
        check(f"{label}: colliding names are namespaced", {"kv__get", "kv2__get", "kv__put", "kv2__put"} <= set(tools) and "get" not in tools, tools)
        check(f"{label}: names fit ^[a-zA-Z0-9_-]{{1,64}}$", all(len(t) <= 64 and t.replace("_", "").replace("-", "").isalnum() for t in tools), tools)
        r = await session.call_tool("convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
        check(f"{label}: convert_time same as direct", text_of(r) == direct["convert_time"], (text_of(r), direct["convert_time"]))
        r = await session.call_tool("git_status", {"repo_path": str(repo)})
        check(f"{label}: git_status same as direct", text_of(r) == direct["git_status"], (text_of(r), direct["git_status"]))
        await session.call_tool("kv__put", {"key": "k", "value": era})
        r1 = await session.call_tool("kv__get", {"key": "k"})
        r2 = await session.call_tool("kv2__get", {"key": "k"})
        check(f"{label}: a namespaced tool reaches its own server", r1.content[0].text == era and r2.content[0].text == "", (text_of(r1), text_of(r2)))
        # Repeats of a cached call (most through the repeat lane, over either front): the same answer.
        repeats = [(await session.call_tool("kv__get", {"key": "k"})).content[0].text for _ in range(6)]
        check(f"{label}: repeats of a cached call answer the same", repeats == [era] * 6, repeats)
        try:
            r = await session.call_tool("no_such_tool", {})
            check(f"{label}: unknown tool is a -32602 error", False, text_of(r))
        except Exception as e:  # the SDK raises the JSON-RPC error
            check(f"{label}: unknown tool is a -32602 error", getattr(e, "code", None) == -32602 or "-32602" in repr(e), repr(e))
        steps = []

        async def progress(done, total, message):
            steps.append((done, total))
        r = await session.call_tool("kv__count_up", {"n": 3}, progress_callback=progress)
        check(f"{label}: progress notifications reach the client with its own token",
              steps == [(1, 3), (2, 3), (3, 3)] and r.content[0].text == "counted to 3", (steps, text_of(r)))
        r = await session.call_tool("convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
        check(f"{label}: the session carries on after a streamed answer", text_of(r) == direct["convert_time"], text_of(r))
        # Cancellation: over stdio in both eras; over HTTP a handshake-era session posts
        # notifications/cancelled, a modern-era client closes its request.
        if True:
            before = (await session.call_tool("kv__cancelled_waits", {})).content[0].text
            waiting = asyncio.create_task(session.call_tool("kv__wait_ms", {"ms": 10000}))
            await asyncio.sleep(0.5)
            waiting.cancel()
            try:
                await waiting
            except BaseException:  # noqa: BLE001 - the cancelled call ends one way or another
                pass
            seen = None
            for _ in range(40):  # bounded: 2 s
                seen = (await session.call_tool("kv__cancelled_waits", {})).content[0].text
                if seen != before:
                    break
                await asyncio.sleep(0.05)
            check(f"{label}: a cancelled call is cancelled at the server", int(seen) == int(before) + 1, (before, seen))
            if era == "legacy":  # over HTTP the SDK client's GET stream carries them
                await session.set_logging_level("warning")
                await session.call_tool("kv__log_twice", {"message": "hello"})
                for _ in range(40):  # bounded: 2 s
                    if logs:
                        break
                    await asyncio.sleep(0.05)
                got = [(p.level, str(p.logger), str(p.data)) for p in logs]
                check(f"{label}: servers' log messages reach the client at its level, named after the server",
                      len(got) == 1 and got[0][0] == "warning" and got[0][1].startswith("kv") and "hello" in got[0][2], got)
        if era == "legacy":
            # A server's requests to the client during a call reach this client and come back.
            r = await session.call_tool("ask__ask_client", {"question": "ping?"})
            check(f"{label}: a server's sampling request reaches the client and its answer the server",
                  r.content[0].text == "the model said: echo ping?", text_of(r))
            # A subscription: the server is asked once, its updates reach this client, and
            # unsubscribing (the last subscriber) tells the server.
            await session.subscribe_resource("sub://doc")
            await session.call_tool("touch", {})
            for _ in range(40):  # bounded: 2 s
                if updates:
                    break
                await asyncio.sleep(0.05)
            check(f"{label}: a subscribed resource's update reaches the client", updates == ["sub://doc"], updates)
            await session.unsubscribe_resource("sub://doc")
            r = await session.call_tool("subscribers", {})
            check(f"{label}: unsubscribing tells the server", r.content[0].text == "0", text_of(r))
            r = await session.call_tool("ask__client_roots", {})
            check(f"{label}: a server's roots/list reaches the client", r.content[0].text == "file:///work/a,file:///work/b", text_of(r))
        if era == "legacy":
            # The gateway announces list changes (capability listChanged): a server adding a
            # tool reaches a handshake-era client on its stream, and the new tool is listed.
            added = (await session.call_tool("m_add_tool", {})).content[0].text
            async def heard():
                return bool(list_changes)
            await eventually(heard)
            names = [t.name for t in (await session.list_tools()).tools]
            check(f"{label}: a server's tool list change reaches the client, the new tool listed", list_changes and added in names, (len(list_changes), added, names))
        if era == "modern":
            await listen_checks(session)
        await input_checks(session)
        prompts = sorted(p.name for p in (await session.list_prompts()).prompts)
        check(f"{label}: prompts listed and namespaced", {"kv__describe", "kv2__describe"} <= set(prompts), prompts)
        p = await session.get_prompt("kv__describe", {"key": "q"})
        check(f"{label}: prompts/get", "q" in json.dumps(p.model_dump(mode="json")), p)
        res = await session.read_resource("kv://k")
        check(f"{label}: resources/read", any(era in json.dumps(c.model_dump(mode="json")) for c in res.contents), res)
    async def listen_checks(session):
        """subscriptions/listen through the gateway: resource updates from a handshake-era
        server (resources/subscribe behind it) and a modern one (its own listen stream), a tool
        list change, and the servers told when the stream ends."""
        from mcp.client.subscriptions import ResourceUpdated, ToolsListChanged, listen
        uris = ["sub://doc", "sub://h/doc", "sub://m/doc"]
        async with listen(session, tools_list_changed=True, resource_subscriptions=uris) as sub:
            check(f"{label}: listen is acknowledged with the filter asked for",
                  sub.honored.tools_list_changed is True and sorted(sub.honored.resource_subscriptions or []) == uris, sub.honored)
            subscribed = await eventually(both_subscribed)
            check(f"{label}: listening subscribes at every server (handshake, modern stdio, modern HTTP)", subscribed, subscribed)
            for tool in ("touch", "m_touch", "h_touch"):
                await session.call_tool(tool, {})
            seen = set()
            deadline = time.monotonic() + 10
            while seen != set(uris) and time.monotonic() < deadline:
                try:
                    event = await asyncio.wait_for(sub.__anext__(), max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if isinstance(event, ResourceUpdated):
                    seen.add(event.uri)
            check(f"{label}: every server's resource updates arrive on the listen stream", seen == set(uris), seen)
            added = (await session.call_tool("h_add_tool", {})).content[0].text
            changed = False
            deadline = time.monotonic() + 10
            while not changed and time.monotonic() < deadline:
                try:
                    event = await asyncio.wait_for(sub.__anext__(), max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                changed = isinstance(event, ToolsListChanged)
            names = [t.name for t in (await session.list_tools()).tools]
            check(f"{label}: a modern server's tool list change arrives on the listen stream, the new tool listed", changed and added in names, (changed, added))
        left = await eventually(nobody_subscribed)
        check(f"{label}: the listen stream's end unsubscribes at every server", left, left)

    async def input_checks(session):
        """A server asking the client for input, across eras: a handshake-era client is sent
        requests whatever the server's era; a modern-era client gets input_required and retries."""
        for tool in ("elicit_m__ask_name", "elicit_h__ask_name"):
            server_era = "modern" if tool.startswith("elicit_m") else "handshake"
            if era == "legacy":
                r = await session.call_tool(tool, {})
                check(f"{label}: a {server_era}-era server's question reaches this client as a request", text_of(r) == [{"type": "text", "text": "hello Ada"}], text_of(r))
                continue
            first = await session.call_tool(tool, {}, allow_input_required=True)
            asks = list((first.input_requests or {}).items())
            ok = len(asks) == 1 and asks[0][1].method == "elicitation/create" and first.request_state
            check(f"{label}: a {server_era}-era server's question reaches this client as input_required", ok, first)
            if not ok:
                continue
            r = await session.call_tool(tool, {}, input_responses={asks[0][0]: {"action": "accept", "content": {"name": "Ada"}}},
                                        request_state=first.request_state)
            check(f"{label}: the retry with the answer completes the call ({server_era}-era server)", text_of(r) == [{"type": "text", "text": "hello Ada"}], r)

    async def both_subscribed():
        return (await count("subscribers"), await count("m_subscribers"), await count("h_subscribers")) == ("1", "1", "1")

    async def nobody_subscribed():
        return (await count("subscribers"), await count("m_subscribers"), await count("h_subscribers")) == ("0", "0", "0")

    # The client answers servers' requests: a model that echoes, and two roots.
    async def on_sampling(context, params):
        asked = params.messages[0].content.text
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text=f"echo {asked}"), model="test-model")

    async def on_roots(context):
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/a"), types.Root(uri="file:///work/b")])

    async def on_elicit(context, params):
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    await session_for(transport, era, run, logging_callback=on_log, sampling_callback=on_sampling, list_roots_callback=on_roots,
                      elicitation_callback=on_elicit, message_handler=on_message)


def log_collector():
    """A logging_callback and what it got: (level, logger, text) per message."""
    got = []

    async def on_log(params):
        data = params.data
        got.append((params.level, params.logger, data.get("msg") if isinstance(data, dict) else str(data)))
    return got, on_log


async def until(got: list, n: int, seconds: float = 5.0) -> None:
    """Waits (bounded) until `got` has `n` entries."""
    deadline = time.monotonic() + seconds
    while len(got) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def log_level(era: str, level: str) -> dict:
    """A modern-era client asks for log messages per request (_meta level, set on the session)."""
    return {"log_level": level} if era == "modern" else {}


async def direct_logs(url: str) -> dict:
    """What the FastMCP server's `chatty` tool logs to a client at level info, called directly,
    in each era: (level, text)."""
    out = {}
    for era in ("legacy", "modern"):
        got, on_log = log_collector()

        async def run(session, era=era, got=got):
            if era != "modern":
                await session.set_logging_level("info")
            await session.call_tool("chatty", {"tag": "direct"})
            await until(got, 2)
        await session_for(streamable_http_client(url), era, run, logging_callback=on_log, **log_level(era, "info"))
        out[era] = [(level, text) for level, _, text in got]
    return out


async def log_checks(open_transport, era: str, label: str, direct: dict, second_session: bool) -> None:
    """A tool's log messages (sent on its call's own stream) reach the client that called it,
    at its level, as they reach a client calling the server directly, named after the server;
    another client session that chose a level (HTTP: same gateway) gets none of them."""
    mine, on_mine = log_collector()
    other, on_other = log_collector()

    async def as_caller(session):
        if era != "modern":
            await session.set_logging_level("info")
        for server in ("flog_h", "flog_m"):
            mine.clear()
            tag = f"{era}-{server}"
            r = await session.call_tool(f"{server}__chatty", {"tag": tag})
            await until(mine, len(direct[era]))
            expected = [(level, server, text.replace("direct", tag)) for level, text in direct[era]]
            check(f"{label}: a tool's log messages reach its caller as directly, named after the server ({server})",
                  mine == expected and r.content[0].text == f"said {tag}", (mine, expected))

    async def as_bystander(session):
        if era != "modern":
            await session.set_logging_level("debug")
        await session_for(open_transport(), era, as_caller, logging_callback=on_mine, **log_level(era, "info"))
        await asyncio.sleep(0.3)  # what leaked would have come with the caller's messages
        check(f"{label}: another client session that chose a level gets none of them", other == [], other)
        await session.call_tool("flog_m__chatty", {"tag": "bystander"})
        await until(other, 3)
        check(f"{label}: ... and gets its own call's messages (at debug)", [t for _, _, t in other] == ["debug bystander", "info bystander", "warning bystander"], other)

    if second_session:
        await session_for(open_transport(), era, as_bystander, logging_callback=on_other, **log_level(era, "debug"))
    else:
        await session_for(open_transport(), era, as_caller, logging_callback=on_mine, **log_level(era, "info"))


async def fastmcp_client(target, label: str):
    from fastmcp import Client
    async with Client(target) as client:
        tools = sorted(t.name for t in await client.list_tools())
        r = await client.call_tool("convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
        check(f"{label}: FastMCP client lists and calls", "convert_time" in tools and "21:00" in json.dumps([c.model_dump(mode="json") for c in r.content]), tools)


def http_checks(port: int) -> None:
    import urllib.error
    import urllib.request

    def fetch(path, method="GET", headers=None, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {}, data=body)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    status, body = fetch("/healthz")
    health = json.loads(body)
    check("http: /healthz is degraded with one server down", status == 200 and health["status"] == "degraded"
          and [s["name"] for s in health["servers"] if not s["up"]] == ["broken"], body)
    status, body = fetch("/metrics")
    check("http: /metrics is Prometheus text", status == 200 and "mcpopt_requests_total" in body and 'mcpopt_server_up{server="time"' in body, body[:300])
    polls = {line.split()[0]: float(line.split()[1]) for line in body.splitlines() if line.startswith("mcpopt_busy_polls_total{")}
    if "--busy-poll" in sys.argv:
        check("http: /metrics counts the busy polls, some of which found work", polls.get('mcpopt_busy_polls_total{outcome="found"}', 0) > 0
              and 'mcpopt_busy_polls_total{outcome="expired"}' in polls, polls)
    else:
        check("http: no busy polls are reported when it does not poll", polls == {}, polls)
    lane = [line for line in body.splitlines() if line.startswith("mcpopt_repeat_lane_answers_total ")]
    check("http: the repeat lane answered real clients' repeats", len(lane) == 1 and float(lane[0].split()[1]) > 0, lane)
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                                                                    "clientInfo": {"name": "t", "version": "1"}}}).encode()
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    status, _ = fetch("/mcp", "POST", dict(accept, Origin="http://evil.example"), init)
    check("http: a foreign Origin gets 403", status == 403, status)
    status, _ = fetch("/mcp", "POST", dict(accept, Host="evil.example"), init)
    check("http: a foreign Host gets 403", status == 403, status)
    status, body = fetch("/mcp", "POST", accept, b"[1,2]")
    check("http: a batch is rejected with 400", status == 400, (status, body))
    status, _ = fetch("/nope")
    check("http: unknown path is 404", status == 404, status)

    # A stateful server gets a backend session per client session, ended by DELETE.
    def session():
        req = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", method="POST", headers=accept, data=init)
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.headers["Mcp-Session-Id"]

    def call(sid, tool, args):
        body = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": args}}).encode()
        status, text = fetch("/mcp", "POST", dict(accept, **{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}), body)
        return json.loads(text)["result"]["content"][0]["text"] if status == 200 else f"HTTP {status}"

    alice, bob = session(), session()
    call(alice, "kv3__put", {"key": "s", "value": "alice's"})
    check("http: a stateful server keeps each client session's own state",
          (call(alice, "kv3__get", {"key": "s"}), call(bob, "kv3__get", {"key": "s"})) == ("alice's", ""))
    # Subscriptions are counted per client session: the server is told once.
    def rpc(sid, method, params):
        body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": method, "params": params}).encode()
        status, text = fetch("/mcp", "POST", dict(accept, **{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}), body)
        return json.loads(text) if status == 200 else {"status": status}

    for sid in (alice, bob):
        rpc(sid, "resources/subscribe", {"uri": "sub://doc"})
    rpc(bob, "resources/unsubscribe", {"uri": "sub://doc"})
    check("http: one session leaving a shared subscription leaves the server subscribed", call(alice, "subscribers", {}) == "1")
    rpc(alice, "resources/unsubscribe", {"uri": "sub://doc"})
    check("http: the last session leaving ends the server's subscription", call(alice, "subscribers", {}) == "0")

    # The GET stream of a session (server messages outside of requests).
    status, _ = fetch("/mcp", "GET", {"Accept": "text/event-stream"})
    check("http: GET without a session is 400", status == 400, status)
    status, _ = fetch("/mcp", "GET", {"Accept": "text/event-stream", "Mcp-Session-Id": "nope"})
    check("http: GET for an unknown session is 404", status == 404, status)
    status, _ = fetch("/mcp", "GET", {"Accept": "application/json", "Mcp-Session-Id": alice})
    check("http: GET that does not accept an event stream is 406", status == 406, status)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", method="GET", headers={"Accept": "text/event-stream", "Mcp-Session-Id": bob})
    with urllib.request.urlopen(req, timeout=20) as r:
        check("http: GET opens the session's event stream", r.status == 200 and r.headers["Content-Type"] == "text/event-stream", r.headers)
    status, _ = fetch("/mcp", "DELETE", {"Mcp-Session-Id": alice})
    check("http: DELETE ends the session", status == 200, status)


async def main() -> None:
    mcpopt, transport, serve_arguments = sys.argv[1], sys.argv[2], sys.argv[3:]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = make_repo(root)
        subs_http = subprocess.Popen([str(BIN / "python"), str(HERE / "subscribe_server.py"), "--prefix", "h", "--http", "0"],
                                     stdout=subprocess.PIPE, text=True)
        line = subs_http.stdout.readline()  # "PORT <n>", or "" if it died
        fastmcp_http = subprocess.Popen([str(BIN / "python"), str(HERE / "fastmcp_server.py")], stdout=subprocess.PIPE, text=True)
        fastmcp_line = fastmcp_http.stdout.readline()
        fastmcp_port = int(fastmcp_line.split()[1]) if fastmcp_line.startswith("PORT ") else 9
        config = servers(repo, int(line.split()[1]) if line.startswith("PORT ") else 9, fastmcp_port)
        config_path = root / "mcpopt.json"
        config_path.write_text(json.dumps({"mcpServers": config}))
        direct = {era: await direct_results(config, era) for era in ("legacy",)}
        logs_direct = await direct_logs(f"http://127.0.0.1:{fastmcp_port}/mcp")
        server = None
        try:
            if transport == "http":
                port = free_port()
                server = subprocess.Popen([mcpopt, "serve", "--config", str(config_path), "--listen", f"127.0.0.1:{port}", *serve_arguments],
                                          stderr=subprocess.PIPE)
                url = f"http://127.0.0.1:{port}/mcp"
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                        break
                    except OSError:
                        time.sleep(0.05)
            for era in ("legacy", "modern"):
                label = f"{transport} {era}"
                if transport == "http":
                    t = streamable_http_client(url)
                else:
                    t = stdio_client(StdioServerParameters(command=mcpopt, args=["stdio", "--config", str(config_path)]))
                try:
                    await asyncio.wait_for(through_gateway(t, era, direct["legacy"], repo, label), 60)
                except Exception as e:  # a crash of the session is a failed check, with its reason
                    check(f"{label}: session", False, repr(e))
                if transport == "http":
                    def open_transport():
                        return streamable_http_client(url)
                else:
                    def open_transport():
                        return stdio_client(StdioServerParameters(command=mcpopt, args=["stdio", "--config", str(config_path)]))
                try:
                    await asyncio.wait_for(log_checks(open_transport, era, label, logs_direct, second_session=transport == "http"), 60)
                except Exception as e:
                    check(f"{label}: log sessions", False, repr(e))
            if transport == "http":
                http_checks(port)
            try:
                if transport == "http":
                    await asyncio.wait_for(fastmcp_client(url, f"{transport} fastmcp"), 60)
                else:
                    from fastmcp.client.transports import StdioTransport
                    await asyncio.wait_for(fastmcp_client(StdioTransport(command=mcpopt, args=["stdio", "--config", str(config_path)]), f"{transport} fastmcp"), 60)
            except Exception as e:
                check(f"{transport} fastmcp: session", False, repr(e))
        finally:
            fastmcp_http.kill()  # uvicorn may wait on open streams at SIGTERM
            fastmcp_http.wait(5)
            subs_http.terminate()
            try:
                subs_http.wait(5)
            except subprocess.TimeoutExpired:  # uvicorn waits for streams to end: no need here
                subs_http.kill()
                subs_http.wait(5)
            if server:
                server.terminate()
                try:
                    code = server.wait(15)
                    check("http: SIGTERM stops the gateway cleanly", code == 0, code)
                except subprocess.TimeoutExpired:
                    server.kill()
                    check("http: SIGTERM stops the gateway cleanly", False, "still running after 15 s")
    sys.exit(summary(f"gateway ({transport})"))


asyncio.run(main())
