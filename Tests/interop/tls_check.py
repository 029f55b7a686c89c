"""The gateway in front of an https:// MCP server: FastMCP behind uvicorn's TLS, with a CA made
for this run. The official SDK client (both eras, over both gateway fronts) and the FastMCP
client list and call its tools through the gateway and get what a direct HTTPS client gets. A
gateway told to trust only the system's CAs leaves the server out and says why. And the
gateway's own front over HTTPS (`serve --tls-cert --tls-key`): the same clients over https://.

usage: tls_check.py MCPOPT
"""
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from interop_util import check, free_port, session_for, summary, wait_listening

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


def texts(result) -> list:
    return [c.text for c in result.content if getattr(c, "text", None) is not None]


async def calls(session) -> dict:
    tools = sorted(t.name for t in (await session.list_tools()).tools)
    add = texts(await session.call_tool("add", {"a": 20, "b": 22}))
    slow = texts(await session.call_tool("slow", {"n": 2}))
    greeting = [c.text for c in (await session.read_resource("data://greeting")).contents]
    return {"tools": tools, "add": add, "slow": slow, "greeting": greeting}


def start_gateway(mcpopt: str, config: dict, directory: Path, extra: list = ()):
    path = directory / f"mcpopt-{len(list(directory.glob('mcpopt-*.json')))}.json"
    path.write_text(json.dumps(config))
    port = free_port()
    # Not this script's SSL_CERT_FILE (OpenSSL would trust the test CA through it): only caFile.
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    # setpriv: the gateway ends with this script, however it ends.
    process = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", mcpopt, "serve", "--config", str(path), "--listen", f"127.0.0.1:{port}", *extra],
                               stderr=subprocess.DEVNULL, env=env)
    return process, port, path


async def main() -> None:
    mcpopt = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        certificates = directory / "certs"
        made = subprocess.run(["bash", str(HERE / "make_test_certs.sh"), str(certificates)], capture_output=True, text=True)
        check("a CA and a server certificate were made", made.returncode == 0, made.stderr)
        if made.returncode != 0:
            sys.exit(summary("tls"))
        ca = str(certificates / "ca.pem")
        server = subprocess.Popen([PYTHON, str(HERE / "fastmcp_server.py"), "--tls", str(certificates / "server.pem"), str(certificates / "server.key")],
                                  stdout=subprocess.PIPE, text=True)
        gateways = []
        try:
            line = server.stdout.readline()
            check("the FastMCP server listens over TLS", line.startswith("PORT "), line)
            if not line.startswith("PORT "):
                sys.exit(summary("tls"))
            https_url = f"https://localhost:{line.split()[1]}/mcp"

            # Directly: the SDK's client (httpx) trusts the test CA through SSL_CERT_FILE.
            os.environ["SSL_CERT_FILE"] = ca
            direct = await session_for(streamable_http_client(https_url), "legacy", calls)
            check("directly over HTTPS: the tools answer", direct["add"] == ["42"] and direct["slow"] == ["done 2"], direct)

            config = {"mcpServers": {"secure": {"url": https_url, "caFile": ca}}}
            gateway, port, path = start_gateway(mcpopt, config, directory)
            gateways.append(gateway)
            check("the gateway listens", wait_listening(port, 30))
            for era in ("legacy", "modern"):
                through = await session_for(streamable_http_client(f"http://127.0.0.1:{port}/mcp"), era, calls)
                check(f"http {era}: the same tools and answers as directly", through == direct, (through, direct))
                stdio = stdio_client(StdioServerParameters(command=mcpopt, args=["stdio", "--config", str(path)]))
                through = await session_for(stdio, era, calls)
                check(f"stdio {era}: the same tools and answers as directly", through == direct, (through, direct))

            from fastmcp import Client
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                result = await client.call_tool("add", {"a": 1, "b": 2})
                check("fastmcp client: a call through the gateway to the https server", texts(result) == ["3"], result)

            # Trusting only the system's CAs, the same server is left out, with the reason.
            plain = {"mcpServers": {"secure": {"url": https_url}}}
            refused, refused_port, _ = start_gateway(mcpopt, plain, directory)
            gateways.append(refused)
            check("the second gateway listens", wait_listening(refused_port, 30))
            health = {}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{refused_port}/healthz", timeout=5) as r:
                        health = json.loads(r.read())
                except urllib.error.HTTPError as e:  # 503 when unhealthy, with the same body
                    health = json.loads(e.read())
                except OSError:
                    pass
                if health.get("servers") and health["servers"][0].get("error"):
                    break
                time.sleep(0.2)
            error = (health.get("servers") or [{}])[0].get("error", "")
            check("an untrusted certificate leaves the server out, and /healthz says why",
                  health.get("status") == "unhealthy" and "certificate was not accepted" in error, health)

            # The gateway's own front over HTTPS, in front of the same https server.
            tls_args = ["--tls-cert", str(certificates / "server.pem"), "--tls-key", str(certificates / "server.key")]
            secure_front, secure_port, _ = start_gateway(mcpopt, config, directory, tls_args)
            gateways.append(secure_front)
            check("the HTTPS front listens", wait_listening(secure_port, 30))
            front_url = f"https://localhost:{secure_port}/mcp"
            for era in ("legacy", "modern"):
                through = await session_for(streamable_http_client(front_url), era, calls)
                check(f"https front, {era}: the same tools and answers as directly", through == direct, (through, direct))
            async with Client(front_url) as client:
                result = await client.call_tool("add", {"a": 2, "b": 2})
                check("fastmcp client over the HTTPS front", texts(result) == ["4"], result)
            with urllib.request.urlopen(f"https://localhost:{secure_port}/healthz", timeout=5) as r:
                check("the HTTPS front serves /healthz", r.status == 200 and json.loads(r.read())["status"] == "healthy")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{secure_port}/healthz", timeout=5).read()
                check("plain HTTP to the HTTPS front is refused", False, "it answered")
            except (OSError, http.client.HTTPException) as e:
                check("plain HTTP to the HTTPS front is refused", True, repr(e))
            bad = subprocess.run([mcpopt, "serve", "--config", str(directory / "mcpopt-0.json"), "--listen", f"127.0.0.1:{free_port()}",
                                  "--tls-cert", str(certificates / "server.pem"), "--tls-key", str(certificates / "other.key")],
                                 capture_output=True, text=True, timeout=60)
            check("a key that is not the certificate's is a clear error", bad.returncode != 0 and "mismatch" in bad.stderr, bad.stderr[-300:])
        finally:
            for gateway in gateways:
                gateway.terminate()
                try:
                    gateway.wait(15)
                except subprocess.TimeoutExpired:
                    gateway.kill()
            server.kill()  # uvicorn may wait on open streams at SIGTERM
            server.wait(5)
    sys.exit(summary("tls"))


asyncio.run(main())
