"""A minimal stdio MCP server (handshake era) whose tools misbehave on purpose, for the
transport's fault tests. Standard library only.

Tools: echo (answers), crash (the process exits mid-call), garbage (writes a non-JSON line and
half a line, then answers), silent (never answers), slow (answers after 0.3 s).
"""
import json
import os
import sys
import time

TOOLS = [{"name": n, "inputSchema": {"type": "object"}} for n in ("echo", "crash", "answer_then_crash", "garbage", "silent", "slow")]


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    sys.stderr.write(f"faulty server {os.getpid()} started\n")
    sys.stderr.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        method, rid = message.get("method"), message.get("id")
        if rid is None:
            continue  # notifications
        if method == "initialize":
            send({"jsonrpc": "2.0", "id": rid, "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                                           "serverInfo": {"name": "faulty", "version": "1"}}})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
        elif method == "tools/call":
            name = message["params"]["name"]
            args = message["params"].get("arguments") or {}
            if name == "answer_then_crash":
                send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "last words"}]}})
                os._exit(3)
            if name == "crash":
                sys.stderr.write("crashing on purpose\n")
                sys.stderr.flush()
                os._exit(3)
            if name == "silent":
                continue
            if name == "garbage":
                sys.stdout.write("this is not json\n")
                sys.stdout.write('{"jsonrpc": "2.0", "id": ')
                sys.stdout.flush()
                time.sleep(0.05)
                sys.stdout.write(f'{rid}, "result": {{"content": [{{"type": "text", "text": "after garbage"}}]}}}}\n')
                sys.stdout.flush()
                continue
            if name == "slow":
                time.sleep(0.3)
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": json.dumps(args)}]}})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": rid, "result": {}})
        else:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"method not found: {method}"}})


if __name__ == "__main__":
    main()
