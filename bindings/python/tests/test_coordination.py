"""coordinate_operation, coordinate_multi_server_operation and recover_transactions from Python,
against real MCP servers over stdio that the engine starts and stops: three FastMCP key-value
servers (Tests/interop/kv_server.py) for fan-outs, and two-phase-commit participants
(Tests/interop/participant_server.py) keeping their committed store in a temporary folder."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

import mcpopt
from mcpopt import errors

REPO = pathlib.Path(__file__).resolve().parents[3]
KV = str(REPO / "Tests/interop/kv_server.py")
PARTICIPANT = str(REPO / "Tests/interop/participant_server.py")
KVS = ["kv1", "kv2", "kv3"]


def kv_config(**extra):
    servers = {n: {"command": sys.executable, "args": [KV, "--name", n], "trustAnnotations": True} for n in KVS}
    return {"mcpServers": servers, **extra}


def participants_config(state, log, names, refusing=(), transactions=True):
    servers = {}
    for n in names:
        args = [PARTICIPANT, "--name", n, "--state", str(state)]
        if n in refusing:
            args.append("--vote-no")
        servers[n] = {"command": sys.executable, "args": args}
    coordination = {"enableDistributedTransactions": True, "transactionLog": str(log)} if transactions else {}
    return {"mcpServers": servers, "coordination": coordination}


def text(entry):
    """The first text content of a fan-out entry's tool result."""
    return entry["result"]["content"][0]["text"]


def answer(entry):
    """A participant tool's structured answer in a fan-out entry."""
    result = entry["result"]
    return result.get("structuredContent") or json.loads(result["content"][0]["text"])


def store(state, name):
    """A participant's committed store, as it is on disk ({} before its first commit)."""
    try:
        return json.loads((state / f"{name}.json").read_text())
    except FileNotFoundError:
        return {}


@pytest.fixture(scope="module")
def kv_engine():
    with mcpopt.Engine(kv_config()) as engine:
        engine.start()
        yield engine


def test_fan_out_of_a_read_reaches_every_server(kv_engine):
    r = kv_engine.coordinate_operation("whoami", KVS, timeout_ms=10_000)
    assert r["operation"] == "whoami" and r["mode"] == "fanout" and r["policy"] == "all"
    assert r["success"] is True and r["size"] == 3 and r["succeeded"] == 3 and r["failed"] == 0, r
    assert set(r["results"]) == set(KVS)
    for name, entry in r["results"].items():
        assert entry["status"] == "success" and entry["success"] is True and entry["latencyMs"] >= 0, entry
        assert text(entry) == name  # each server answered for itself (no answer shared between servers)
    assert r["durationMs"] >= 0

    # The same arguments for every server ("data"), then a read of them back.
    put = kv_engine.coordinate_operation("put", KVS, {"key": "color", "value": "blue"}, timeout_ms=10_000)
    assert put["success"] and all(text(e) == "ok" for e in put["results"].values()), put
    got = kv_engine.coordinate_operation("get", KVS, {"key": "color"})
    assert got["success"] and {n: text(e) for n, e in got["results"].items()} == {n: "blue" for n in KVS}, got

    metrics = kv_engine.get_optimization_metrics()["coordination"]
    assert metrics["fanOutOperations"] >= 3 and metrics["fanOutCalls"] >= 9, metrics


def test_per_server_calls_and_policies_when_one_server_fails(kv_engine):
    calls = [{"server": "kv1", "tool": "whoami"}, {"server": "kv2", "tool": "whoami", "arguments": {}},
             {"server": "kv3", "tool": "no_such_tool", "arguments": {}}]

    every = kv_engine.coordinate_multi_server_operation("read", calls, policy="all", timeout_ms=10_000)
    assert every["success"] is False and every["size"] == 3 and every["failed"] == 1, every
    assert every["results"]["kv3"]["status"] == "error" and every["results"]["kv3"]["success"] is False
    assert "no_such_tool" in every["results"]["kv3"]["error"], every["results"]["kv3"]

    quorum = kv_engine.coordinate_multi_server_operation("read", calls, policy="quorum", quorum=2, timeout_ms=10_000)
    assert quorum["success"] is True and quorum["policy"] == "quorum(2)" and quorum["succeeded"] >= 2, quorum

    first = kv_engine.coordinate_multi_server_operation("read", calls, policy="first", concurrency=1, timeout_ms=10_000)
    assert first["success"] is True and first["policy"] == "first", first
    # One at a time, in order: kv1 succeeds first, and the rest are never run.
    assert first["succeeded"] == 1 and first["results"]["kv1"]["status"] == "success"
    assert {first["results"][n]["status"] for n in ("kv2", "kv3")} == {"cancelled"}, first

    # A tool that answers with an error (get without its argument) fails that server's call too.
    bad_args = kv_engine.coordinate_multi_server_operation(
        "get", [{"server": "kv1", "arguments": {"key": "color"}}, {"server": "kv2", "arguments": {}}], timeout_ms=10_000)
    assert bad_args["success"] is False and bad_args["results"]["kv2"]["status"] == "error", bad_args
    assert bad_args["results"]["kv1"]["status"] == "success"

    # A quorum that cannot be reached fails.
    two_bad = [{"server": "kv1", "tool": "whoami"}, {"server": "kv2", "tool": "nope"}, {"server": "kv3", "tool": "nope"}]
    assert kv_engine.coordinate_multi_server_operation("read", two_bad, policy="quorum", quorum=2)["success"] is False


def test_policy_all_runs_every_call_to_the_end(kv_engine):
    """include/mcpopt.h: only "quorum" and "first" cancel the calls still running once decided;
    FanOutPolicy.all: "Every target must succeed; all are run to the end". So a failing server
    must not cost the others their results."""
    # Two reads that take 200 ms (not cached before: a key of their own) and a call that fails at once.
    slow = {"key": "policy-all", "ms": 200}
    calls = [{"server": "kv1", "tool": "slow_get", "arguments": slow}, {"server": "kv2", "tool": "slow_get", "arguments": slow},
             {"server": "kv3", "tool": "no_such_tool"}]
    every = kv_engine.coordinate_multi_server_operation("read", calls, policy="all", timeout_ms=10_000)
    assert every["success"] is False
    statuses = {n: e["status"] for n, e in every["results"].items()}
    assert statuses == {"kv1": "success", "kv2": "success", "kv3": "error"}, every
    assert every["succeeded"] == 2 and every["failed"] == 1


@pytest.mark.parametrize("call", [
    lambda e: e.coordinate_operation("whoami", ["kv1", "no-such-server"]),
    lambda e: e.coordinate_operation("whoami", ["kv1", "kv1"]),
    lambda e: e.coordinate_operation("whoami", []),
    lambda e: e.coordinate_operation("", ["kv1"]),
    lambda e: e.coordinate_operation("whoami", ["kv1"], policy="most"),
    lambda e: e.coordinate_operation("whoami", ["kv1", "kv2"], policy="quorum"),          # no quorum given
    lambda e: e.coordinate_operation("whoami", ["kv1", "kv2"], policy="quorum", quorum=3),  # more than the servers
    lambda e: e.coordinate_operation("whoami", ["kv1"], mode="sideways"),
    lambda e: e.coordinate_operation("whoami", ["kv1"], concurrency=0),
    lambda e: e.coordinate_operation("whoami", ["kv1"], timeout_ms=-5),
    lambda e: e.coordinate_multi_server_operation("read", [{"tool": "whoami"}]),           # a call without a server
    lambda e: e.coordinate_multi_server_operation("read", [{"server": "nope", "tool": "whoami"}]),
], ids=["unknown server", "server twice", "no servers", "no operation", "bad policy", "quorum without n",
        "quorum too big", "bad mode", "concurrency 0", "negative timeout", "call without server", "unknown server in calls"])
def test_bad_requests_raise_invalid_argument(kv_engine, call):
    with pytest.raises(errors.MCPOptError) as raised:
        call(kv_engine)
    assert raised.value.status == errors.INVALID_ARGUMENT, raised.value.message
    assert raised.value.status_name == mcpopt._native.lib().mcpopt_status_string(errors.INVALID_ARGUMENT).decode()
    assert raised.value.message


def test_unknown_server_error_names_it(kv_engine):
    with pytest.raises(errors.MCPOptError, match="no-such-server"):
        kv_engine.coordinate_operation("whoami", ["kv1", "no-such-server"])
    # The engine still serves afterwards.
    assert kv_engine.coordinate_operation("whoami", ["kv2"])["success"]


def test_arguments_are_checked_before_the_library():
    with mcpopt.Engine({}) as engine:
        with pytest.raises(TypeError):
            engine.coordinate_operation("whoami", "kv1")
        with pytest.raises(TypeError):
            engine.coordinate_multi_server_operation("read", {"server": "kv1"})
        with pytest.raises(TypeError):
            engine.coordinate_operation("whoami", ["kv1"], {}, "fanout")  # options are keyword-only
    with pytest.raises(errors.InvalidHandleError):
        engine.coordinate_operation("whoami", ["kv1"])
    with pytest.raises(errors.InvalidHandleError):
        engine.recover_transactions()


def test_transactions_are_unsupported_unless_enabled(tmp_path):
    cfg = participants_config(tmp_path / "state", tmp_path / "tx.db", ["p1", "p2"], transactions=False)
    with mcpopt.Engine(cfg) as engine:
        with pytest.raises(errors.MCPOptError) as raised:
            engine.coordinate_operation("set", ["p1", "p2"], {"key": "k", "value": 1}, mode="transaction", timeout_ms=10_000)
        assert raised.value.status == errors.UNSUPPORTED, raised.value.message
        assert "enableDistributedTransactions" in raised.value.message
        with pytest.raises(errors.MCPOptError) as raised:
            engine.recover_transactions()
        assert raised.value.status == errors.UNSUPPORTED
        # Nothing was prepared or applied anywhere, and no decision log was opened.
        assert all(store(tmp_path / "state", n) == {} for n in ("p1", "p2"))
        assert not (tmp_path / "tx.db").exists()


def test_two_phase_commit_across_three_participants(tmp_path):
    state, log = tmp_path / "state", tmp_path / "tx.db"
    names = ["p1", "p2", "p3"]
    with mcpopt.Engine(participants_config(state, log, names)) as engine:
        engine.start()
        before = engine.coordinate_operation("kv_get", names, {"key": "color"}, timeout_ms=10_000)
        assert before["success"] and all(answer(e) == {"value": None} for e in before["results"].values()), before

        r = engine.coordinate_operation("set-color", names, {"key": "color", "value": {"name": "blue", "rgb": [0, 0, 255]}},
                                        mode="transaction", transaction_id="tx-commit-1", timeout_ms=20_000)
        assert r["mode"] == "transaction" and r["operation"] == "set-color", r
        assert r["success"] is True and r["committed"] is True, r
        assert r["transactionId"] == "tx-commit-1" and r["reason"] is None and r["unacknowledged"] == []

        # Every participant's committed store on disk holds the value.
        for n in names:
            assert store(state, n) == {"color": {"name": "blue", "rgb": [0, 0, 255]}}, (n, store(state, n))

        # Read back through the request path, pinned to one server...
        got = engine.call_tool("kv_get", {"key": "color"}, servers=["p2"])
        assert got["success"] and got["server"] == "p2", got
        structured = got["response"]["result"].get("structuredContent") or json.loads(got["response"]["result"]["content"][0]["text"])
        assert structured == {"value": {"name": "blue", "rgb": [0, 0, 255]}}
        # ...and through a fan-out to all three (no stale cached "before" answer).
        after = engine.coordinate_operation("kv_get", names, {"key": "color"}, timeout_ms=10_000)
        assert after["success"] and all(answer(e) == {"value": {"name": "blue", "rgb": [0, 0, 255]}}
                                         for e in after["results"].values()), after
        status = engine.coordinate_operation("tx_status", names, {"transaction_id": "tx-commit-1"}, timeout_ms=10_000)
        assert all(answer(e) == {"state": "committed"} for e in status["results"].values()), status

        # A transaction with per-participant payloads (coordinate_multi_server_operation).
        calls = [{"server": n, "arguments": {"key": "owner", "value": n}} for n in names]
        multi = engine.coordinate_multi_server_operation("set-owner", calls, mode="transaction", timeout_ms=20_000)
        assert multi["committed"] is True and multi["transactionId"].startswith("set-owner"), multi
        assert all(store(state, n)["owner"] == n for n in names)

        # Nothing is left unfinished in the decision log.
        assert engine.recover_transactions() == []
        tx = engine.get_optimization_metrics()["coordination"]["transactions"]
        assert tx["committed"] == 2 and tx["aborted"] == 0, tx


def test_a_no_vote_aborts_everywhere(tmp_path):
    state, log = tmp_path / "state", tmp_path / "tx.db"
    names = ["p1", "p2", "p3"]
    with mcpopt.Engine(participants_config(state, log, names, refusing=["p3"])) as engine:
        r = engine.coordinate_operation("set-color", names, {"key": "color", "value": "red"}, mode="transaction",
                                        transaction_id="tx-no-1", timeout_ms=20_000)
        assert r["success"] is False and r["committed"] is False, r
        assert r["transactionId"] == "tx-no-1" and r["unacknowledged"] == []
        assert "p3" in r["reason"] and "refuse" in r["reason"], r["reason"]
        # No store holds the value.
        for n in names:
            assert "color" not in store(state, n), (n, store(state, n))
        got = engine.coordinate_operation("kv_get", names, {"key": "color"}, timeout_ms=10_000)
        assert all(answer(e) == {"value": None} for e in got["results"].values()), got
        status = engine.coordinate_operation("tx_status", names, {"transaction_id": "tx-no-1"}, timeout_ms=10_000)
        assert {n: answer(e)["state"] for n, e in status["results"].items()} == {n: "aborted" for n in names}, status

        # A payload a participant does not accept is a no vote too.
        bad = engine.coordinate_operation("set-bad", ["p1", "p2"], {"value": "no key"}, mode="transaction", timeout_ms=20_000)
        assert bad["committed"] is False and "payload" in bad["reason"], bad
        assert engine.recover_transactions() == []


# Crash recovery: a child process runs a transaction with the engine's test hook
# MCPOPT_TEST_CRASH_AFTER_DECISION=1 (it exits right after the decision is durable, before any
# participant hears it); another child, on the same decision log, finishes it. Both run as
# children so that a hang is bounded by a timeout here.
CHILD = r"""
import json, sys
import mcpopt
config, phase = json.loads(sys.argv[1]), sys.argv[2]
engine = mcpopt.Engine(config)
if phase == "crash":
    engine.coordinate_operation("set-crash", ["p1", "p2"], {"key": "crash", "value": "after-decision"},
                                mode="transaction", transaction_id="tx-crash", timeout_ms=20_000)
    print("the crash hook did not fire", flush=True)
    sys.exit(3)
print(json.dumps(engine.recover_transactions()), flush=True)
print(json.dumps(engine.recover_transactions()), flush=True)
engine.close()
"""


def run_child(cfg, phase, **env):
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg), phase], capture_output=True, text=True,
                          timeout=45, env={**os.environ, **env})


def test_recover_transactions_finishes_a_decided_transaction(tmp_path):
    state, log = tmp_path / "state", tmp_path / "tx.db"
    cfg = participants_config(state, log, ["p1", "p2"])
    crashed = run_child(cfg, "crash", MCPOPT_TEST_CRASH_AFTER_DECISION="1")
    assert crashed.returncode == 70, (crashed.returncode, crashed.stdout, crashed.stderr[-2000:])
    assert "crash" not in store(state, "p1") and "crash" not in store(state, "p2")

    try:
        recovered = run_child(cfg, "recover")
    except subprocess.TimeoutExpired:
        pytest.fail("recover_transactions did not return within 45 s (the engine hangs recovering a decided transaction)")
    assert recovered.returncode == 0, (recovered.returncode, recovered.stdout, recovered.stderr[-2000:])
    first, second = (json.loads(line) for line in recovered.stdout.splitlines()[-2:])
    assert first == [{"transactionId": "tx-crash", "committed": True, "unacknowledged": []}], first
    assert second == []
    assert store(state, "p1")["crash"] == store(state, "p2")["crash"] == "after-decision"
