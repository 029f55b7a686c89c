"""Two-phase commit and fan-out across real MCP participant servers (FastMCP, made participants
with the mcpopt.participant helper), driven through the Python binding: over stdio and
Streamable HTTP, commit across 3 and 10, a no vote, a prepare timeout, and a coordinator killed
between its decision and the commit (a new process on the same decision log finishes it).

usage: coordination_check.py   (MCPOPT_LIBRARY and PYTHONPATH as for the binding's tests)
Prints one line per check and "coordination: N passed, M failed"; exits 1 on failure.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from interop_util import check, summary  # noqa: E402

import mcpopt  # noqa: E402

PARTICIPANT = str(HERE / "participant_server.py")
STDIO = [f"s{i}" for i in range(1, 8)]      # 7 stdio participants
HTTP = ["h1", "h2", "h3"]                   # 3 over Streamable HTTP


def store(state: Path, name: str) -> dict:
    try:
        return json.loads((state / f"{name}.json").read_text())
    except FileNotFoundError:
        return {}


def start_http(state: Path, name: str, *extra: str):
    p = subprocess.Popen([sys.executable, PARTICIPANT, "--name", name, "--state", str(state), "--http", "0", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line.startswith("PORT "):
            return p, int(line.split()[1])
        if not line and p.poll() is not None:
            break
    p.kill()
    raise RuntimeError(f"participant {name} did not start over HTTP")


def config(state: Path, log: Path, ports: dict, timeout_ms: int = 10_000) -> dict:
    servers = {n: {"command": sys.executable, "args": [PARTICIPANT, "--name", n, "--state", str(state)]} for n in STDIO}
    servers["refuser"] = {"command": sys.executable, "args": [PARTICIPANT, "--name", "refuser", "--state", str(state), "--vote-no"]}
    servers["slow"] = {"command": sys.executable, "args": [PARTICIPANT, "--name", "slow", "--state", str(state), "--prepare-delay-ms", "3000"]}
    for n, port in ports.items():
        servers[n] = {"url": f"http://127.0.0.1:{port}/mcp"}
    return {"mcpServers": servers,
            "coordination": {"enableDistributedTransactions": True, "transactionLog": str(log), "transactionTimeout": timeout_ms}}


def tx_status(engine, server: str, tx: str) -> str:
    r = engine.coordinate_operation("tx_status", [server], {"transaction_id": tx})
    result = r["results"][server].get("result") or {}
    answer = result.get("structuredContent") or json.loads(result["content"][0]["text"])
    return answer["state"]


def crash_run(config_path: str, servers: list) -> None:
    """Child process: runs one transaction with the crash hook set; never returns normally."""
    engine = mcpopt.Engine(json.loads(Path(config_path).read_text()))
    engine.start()
    engine.coordinate_operation("crash", servers, {"key": "crash", "value": "after-decision"}, mode="transaction", transaction_id="tx-crash")
    print("the crash hook did not fire", flush=True)
    sys.exit(3)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="mcpopt-coord-"))
    state, log = tmp / "state", tmp / "tx.db"
    state.mkdir()
    procs, ports = [], {}
    try:
        for n in HTTP:
            p, port = start_http(state, n)
            procs.append(p)
            ports[n] = port
        cfg = config(state, log, ports)
        with mcpopt.Engine(cfg) as engine:
            engine.start()

            # Commit across 3: two over stdio, one over HTTP.
            three = ["s1", "s2", "h1"]
            r = engine.coordinate_operation("set-a", three, {"key": "a", "value": 1}, mode="transaction")
            check("commit across 3 (stdio and HTTP)", r["success"] and r["committed"] and r["unacknowledged"] == [], r)
            check("every one of the 3 applied it", all(store(state, n).get("a") == 1 for n in three),
                  {n: store(state, n) for n in three})
            check("a participant not in it did not", "a" not in store(state, "s3"))

            # Commit across 10.
            ten = STDIO + HTTP
            r = engine.coordinate_operation("set-b", ten, {"key": "b", "value": "ten"}, mode="transaction")
            check("commit across 10", r["success"] and r["committed"], r)
            check("every one of the 10 applied it", all(store(state, n).get("b") == "ten" for n in ten))

            # Fan-out of a read across the 10: the result map.
            r = engine.coordinate_operation("kv_get", ten, {"key": "b"})
            check("fan-out across 10: size and successes", r["size"] == 10 and r["succeeded"] == 10 and r["success"], r)
            check("fan-out result per server",
                  all((e.get("result") or {}).get("structuredContent", {}).get("value") == "ten" for e in r["results"].values()))

            # One participant votes no: everyone aborts.
            r = engine.coordinate_operation("set-c", ["s1", "s2", "refuser"], {"key": "c", "value": 3}, mode="transaction",
                                            transaction_id="tx-no")
            check("a no vote aborts", not r["success"] and not r["committed"] and "refuser voted no" in (r["reason"] or ""), r)
            check("nobody applied the aborted value", all("c" not in store(state, n) for n in ["s1", "s2", "refuser"]))
            check("the yes voters were told to abort", tx_status(engine, "s1", "tx-no") == "aborted" and tx_status(engine, "s2", "tx-no") == "aborted")

            # A participant that takes 3 s to prepare, against a 500 ms timeout: abort.
            started = time.monotonic()
            r = engine.coordinate_operation("set-d", ["s3", "slow"], {"key": "d", "value": 4}, mode="transaction",
                                            timeout_ms=500, transaction_id="tx-slow")
            check("a prepare timeout aborts", not r["committed"] and "timed out" in (r["reason"] or ""), r)
            check("s3 ends aborted", tx_status(engine, "s3", "tx-slow") == "aborted")
            deadline, slow_state = time.monotonic() + 15, None
            while time.monotonic() < deadline:
                slow_state = tx_status(engine, "slow", "tx-slow")
                if slow_state == "aborted":
                    break
                time.sleep(0.2)
            check("the slow participant ends aborted too (its late yes is overridden)", slow_state == "aborted", slow_state)
            check("nobody applied the timed-out value", "d" not in store(state, "s3") and "d" not in store(state, "slow"))

            m = engine.get_optimization_metrics()["coordination"]
            check("metrics count the transactions",
                  m["transactions"]["committed"] == 2 and m["transactions"]["aborted"] == 2 and m["transactionSuccessRate"] == 0.5, m)

            # Errors are errors, not crashes.
            try:
                engine.coordinate_operation("kv_get", ["s1", "nope"], {"key": "a"})
                check("an unknown server is refused", False)
            except mcpopt.errors.MCPOptError as e:
                check("an unknown server is refused", "nope" in str(e), e)

        # The coordinator is killed between its durable decision and telling anyone.
        cfg_path = tmp / "config.json"
        cfg_path.write_text(json.dumps(cfg))
        crash_servers = ["s4", "s5", "h2"]
        child = subprocess.run([sys.executable, __file__, "--crash-run", str(cfg_path), ",".join(crash_servers)],
                               env={**os.environ, "MCPOPT_TEST_CRASH_AFTER_DECISION": "1"}, capture_output=True, text=True, timeout=120)
        check("the coordinator died after the decision", child.returncode == 70, (child.returncode, child.stdout[-500:], child.stderr[-500:]))
        check("nobody had committed yet", all("crash" not in store(state, n) for n in crash_servers))
        with mcpopt.Engine(cfg) as engine:
            engine.start()  # recovery runs here
            m = engine.get_optimization_metrics()["coordination"]
            check("the restarted coordinator recovered it", m["transactions"]["recovered"] == 1, m)
            check("after recovery every participant committed",
                  all(store(state, n).get("crash") == "after-decision" for n in crash_servers), {n: store(state, n) for n in crash_servers})
            check("participants say committed", all(tx_status(engine, n, "tx-crash") == "committed" for n in crash_servers))
            reported = engine.recover_transactions()
            check("the start's recovery is reported once",
                  reported == [{"transactionId": "tx-crash", "committed": True, "unacknowledged": []}], reported)
            check("nothing is left to recover", engine.recover_transactions() == [])
    finally:
        for p in procs:
            p.kill()
            p.wait()
    return summary("coordination")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--crash-run":
        crash_run(sys.argv[2], sys.argv[3].split(","))
    sys.exit(main())
