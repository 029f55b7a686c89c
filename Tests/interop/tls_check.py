"""The gateway in front of an https:// MCP server: FastMCP behind uvicorn's TLS, with a CA made
for this run. The official SDK client (both eras, over both gateway fronts) and the FastMCP
client list and call its tools through the gateway and get what a direct HTTPS client gets. A
gateway told to trust only the system's CAs leaves the server out and says why. And the
gateway's own front over HTTPS (`serve --tls-cert --tls-key`): the same clients over https://,
and a renewed certificate taken at SIGHUP.

usage: tls_check.py MCPOPT
"""
import asyncio
import http.client
import json
import os
import shutil
import signal
import ssl
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


def served_certificate(port: int) -> bytes:
    """The certificate a new TLS connection to the port is given (DER; not verified)."""
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=5))


def certificate_file(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


async def renewal_checks(mcpopt: str, config: dict, directory: Path, certificates: Path, gateways: list) -> None:
    """SIGHUP makes an HTTPS front read its certificate files again: new connections get the
    renewed certificate, a connection made before keeps working, files that do not load leave
    the certificate in use as it was, and the gateway serves on throughout."""
    cert, key = directory / "front.pem", directory / "front.key"
    shutil.copy(certificates / "server.pem", cert)
    shutil.copy(certificates / "server.key", key)
    front, port, _ = start_gateway(mcpopt, config, directory, ["--tls-cert", str(cert), "--tls-key", str(key)])
    gateways.append(front)
    check("renewal: the front listens", wait_listening(port, 30))
    check("renewal: it presents the certificate it started with", served_certificate(port) == certificate_file(certificates / "server.pem"))
    context = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    before = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    before.request("GET", "/healthz")
    check("renewal: a connection made before answers", before.getresponse().read() and True)

    shutil.copy(certificates / "renewed.pem", cert)
    shutil.copy(certificates / "renewed.key", key)
    front.send_signal(signal.SIGHUP)
    renewed = certificate_file(certificates / "renewed.pem")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and served_certificate(port) != renewed:
        time.sleep(0.1)
    check("renewal: after SIGHUP new connections get the renewed certificate", served_certificate(port) == renewed)
    before.request("GET", "/healthz")
    response = before.getresponse()
    check("renewal: the connection made before still answers", response.status == 200 and json.loads(response.read())["status"] == "healthy")
    before.close()
    through = await session_for(streamable_http_client(f"https://localhost:{port}/mcp"), "legacy", calls)
    check("renewal: a client over a new connection gets its answers", through["add"] == ["42"], through)

    cert.write_text("not a certificate\n")
    front.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    check("renewal: files that do not load leave the renewed certificate in use",
          front.poll() is None and served_certificate(port) == renewed)


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
            await renewal_checks(mcpopt, config, directory, certificates, gateways)
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
