"""What the interop checks share: pass/fail lines and their tally, free ports, waiting for a
listener, and an MCP client session of either protocol era."""
import socket
import time

from mcp import ClientSession

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


async def session_for(transport, era: str, run, logging_callback=None, **callbacks):
    """Opens `transport`, starts a session in `era` ("modern": server/discover; else
    initialize) and returns what `run(session)` returns. `callbacks`: the SDK client's others
    (sampling_callback, list_roots_callback, elicitation_callback)."""
    async with transport as streams:
        async with ClientSession(streams[0], streams[1], logging_callback=logging_callback, **callbacks) as session:
            if era == "modern":
                await session.discover()
            else:
                await session.initialize()
            return await run(session)


def summary(label: str) -> int:
    print(f"{label}: {passed} passed, {failed} failed")
    return 1 if failed else 0
