"""The API served by a real ``odoo-rollback serve`` on a Unix socket, with signed requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg2
import pytest
from conftest import PG, SERVED_SECRET, HelperEnv, Served
from odoo_rollback.api.client import HelperClient
from odoo_rollback.api.signing import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from psycopg2 import sql

VECTORS = json.loads((Path(__file__).parent / "data" / "signing_vectors.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["path"] for v in VECTORS])
def test_signing_vectors(vector: dict[str, str]) -> None:
    body = vector["body"].encode()
    # Computed independently of the implementation, from the documented message layout.
    fields = [vector["method"], vector["path"], vector["timestamp"], vector["nonce"], vector["database"]]
    message = "\n".join([*fields, hashlib.sha256(body).hexdigest()]).encode()
    independent = hmac.new(vector["secret"].encode(), message, hashlib.sha256).hexdigest()
    assert independent == vector["signature"]
    assert sign(vector["secret"].encode(), *fields, body) == vector["signature"]


def test_socket_is_not_world_accessible(served: Served) -> None:
    assert os.stat(served.socket_path).st_mode & 0o007 == 0


def test_health(served: Served, helper_env: HelperEnv) -> None:
    status, health = served.client.request("GET", "/v1/health")
    assert status == 200
    assert health["ok"] is True and health["database"] == helper_env.db.name
    assert health["running_job"] is None
    # The host's load, as /proc tells it: Odoo's checklist compares it with its CPU and memory thresholds.
    system = health["system"]
    assert system["cpus"] >= 1
    assert system["cpu_percent"] >= 0
    assert 0 < system["memory_percent"] < 100
    # One report: the API's is the command line's, check for check.
    cli = helper_env.run_json("health")
    assert [(c["name"], c["ok"]) for c in health["checks"]] == [(c["name"], c["ok"]) for c in cli["checks"]]
    assert health["ok"] is cli["ok"] and health["database_reachable"] is cli["database_reachable"]


def test_wrong_secret_unsigned_stale_and_replayed_requests_are_refused(served: Served) -> None:
    database = served.client.database
    assert HelperClient(f"unix:{served.socket_path}", b"wrong", database).request("GET", "/v1/health")[0] == 401
    assert served.client.request("GET", "/v1/health", headers={SIGNATURE_HEADER: ""})[0] == 401
    # A request signed ten minutes ago.
    stale = str(int(time.time()) - 600)
    nonce = "ab" * 16
    headers = {
        TIMESTAMP_HEADER: stale,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(SERVED_SECRET, "GET", "/v1/health", stale, nonce, database, b""),
    }
    assert served.client.request("GET", "/v1/health", headers=headers)[0] == 401
    # The same signed request twice: the second is a replay.
    now = str(int(time.time()))
    headers = {
        TIMESTAMP_HEADER: now,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(SERVED_SECRET, "GET", "/v1/health", now, nonce, database, b""),
    }
    assert served.client.request("GET", "/v1/health", headers=headers)[0] == 200
    assert served.client.request("GET", "/v1/health", headers=headers)[0] == 401
    # A signature over another body does not carry over.
    body_headers = {
        TIMESTAMP_HEADER: now,
        NONCE_HEADER: "cd" * 16,
        SIGNATURE_HEADER: sign(SERVED_SECRET, "POST", "/v1/drills", now, "cd" * 16, database, b"{}"),
    }
    assert served.client.request("POST", "/v1/drills", {"snapshot": "x"}, headers=body_headers)[0] == 401
    assert served.log.read_text().count("refused") >= 5


def test_snapshot_job_then_journal_and_preview(served: Served, helper_env: HelperEnv) -> None:
    status, reply = served.client.request(
        "POST", "/v1/snapshots", {"kind": "pre_deploy", "label": "--yes $(reboot)", "verify": True}
    )
    assert status == 202 and reply["job"]["state"] in ("queued", "running")

    job = served.wait_job(reply["job"]["id"])

    assert job["state"] == "done", job
    assert job["result"]["kind"] == "pre_deploy" and job["result"]["verify"]["ok"] is True
    assert job["result"]["label"] == "--yes $(reboot)"  # an argument, never an option or a shell word
    assert job["operation_id"] and [s["status"] for s in job["steps"]][-1] == "done"
    status, listed = served.client.request("GET", "/v1/snapshots")
    assert [s["id"] for s in listed["snapshots"]] == [job["result"]["id"]]

    # Nothing written yet: every tracked table that exists is listed with 0 (Odoo shows one line each).
    status, preview = served.client.request("GET", f"/v1/snapshots/{job['result']['id']}/preview")
    assert status == 200 and preview["lost_rows"] == {"account_move": 0, "res_partner": 0}
    assert preview["total"] == 0

    helper_env.db.execute("INSERT INTO res_partner (name) VALUES ('late')")
    status, preview = served.client.request("GET", f"/v1/snapshots/{job['result']['id']}/preview")
    assert status == 200 and preview["lost_rows"]["res_partner"] == 1 and preview["total"] == 1

    status, page = served.client.request("GET", "/v1/journal?since=0&limit=2")
    assert status == 200 and len(page["events"]) == 2
    status, rest = served.client.request("GET", f"/v1/journal?since={page['next']}")
    kinds = {op["kind"] for op in {**page["operations"], **rest["operations"]}.values()}
    assert kinds == {"snapshot", "verify"}
    assert rest["events"][0]["seq"] == page["next"] + 1


def test_bad_requests(served: Served, helper_env: HelperEnv) -> None:
    assert served.client.request("GET", "/v1/snapshots/20990101T000000Z-manual-abcdef/preview")[0] == 404
    assert served.client.request("GET", "/v1/jobs/job-unknown")[0] == 404
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    status, reply = served.client.request("POST", "/v1/restores", {"snapshot": snap["id"], "confirm_database": "prod"})
    assert status == 400 and "confirm_database" in reply["error"]
    status, reply = served.client.request("POST", "/v1/snapshots/nope/verify", {})
    assert status == 404


def test_a_second_restore_while_one_runs_is_refused(served: Served, helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    body = {"snapshot": snap["id"], "confirm_database": helper_env.db.name}
    status, first = served.client.request("POST", "/v1/restores", body)
    assert status == 202
    # Freeze the first restore's process so that it is certainly still running.
    job_pid = None
    deadline = time.monotonic() + 10
    while job_pid is None and time.monotonic() < deadline:
        out = subprocess.run(
            ["pgrep", "-f", f"restore {snap['id']} --yes"], capture_output=True, text=True, check=False
        ).stdout.split()
        job_pid = int(out[0]) if out else None
    assert job_pid, "the restore job did not start"
    os.kill(job_pid, signal.SIGSTOP)
    try:
        status, second = served.client.request("POST", "/v1/restores", body)
        assert status == 409 and "a restore is running (pid " in second["error"] and "resume" not in second["error"]
    finally:
        os.kill(job_pid, signal.SIGCONT)
    assert served.wait_job(first["job"]["id"])["state"] == "done"


def test_serve_refuses_a_world_readable_secret(helper_env: HelperEnv, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("x")
    secret_file.chmod(0o644)
    helper_env.write(api={"socket": str(tmp_path / "s.sock"), "secret_file": str(secret_file)})
    result = helper_env.run("serve", timeout=30)
    assert result.returncode == 2 and "readable by everyone" in result.stderr


def test_health_tells_the_room_for_the_next_snapshot_and_the_kept_databases(
    served: Served, helper_env: HelperEnv
) -> None:
    # What a restore leaves behind, and a database whose name only looks alike ("_" is no wildcard).
    kept = f"{helper_env.db.name}__failed_20261124T213000Z"
    lookalike = f"{helper_env.db.name}x_failedx{os.getpid()}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            for name in (kept, lookalike):
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        status, health = served.client.request("GET", "/v1/health")
        assert status == 200
        assert [db["name"] for db in health["kept_databases"]] == [kept]
        assert health["kept_databases"][0]["size"] > 0
        assert health["next_snapshot_needs_bytes"] > 0
        # The health check says the same room, in words.
        storage = next(check for check in health["checks"] if check["name"] == "storage")
        assert f"the next snapshot needs about {health['next_snapshot_needs_bytes'] // 2**20} MiB" in storage["detail"]
    finally:
        with admin.cursor() as cur:
            for name in (kept, lookalike):
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()
