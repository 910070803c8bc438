"""``odoo-rollback deploy`` end to end: a real git repository of a small addon, real Odoo 16 running the
module update, real PostgreSQL, and the docker backend with a stand-in Odoo container.

The addon repository has a first revision (installed in a template database once per module), a second
revision whose update raises (its data file names a field that does not exist), and a good second
revision. The broken update first updates ``rb_deploy_probe`` (Odoo commits its new column), then
fails in ``rb_deploy_probe_ui``: the database is really half-updated when the rollback starts.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    PG,
    TEST_DB_PREFIX,
    ComposeStandIn,
    HelperEnv,
    OdooLikeDatabase,
    drop_database,
    list_databases,
    pg_connect,
    remove_compose_stand_in,
    start_compose_stand_in,
)
from odoo_rollback.code import changed_modules
from odoo_rollback.config import load_config
from odoo_rollback.deploy import DEPLOYED, Clock, DeployRequest, deploy
from odoo_rollback.journal import Journal
from odoo_rollback.lock import operation_lock
from psycopg2 import sql
from test_crash import CRASH_RUNNER

ODOO_SRC = Path(os.environ.get("ODOO_SRC", "/nonexistent"))
ODOO_PG = {
    "db_host": PG["host"],
    "db_port": str(PG["port"]),
    "db_user": os.environ.get("ROLLBACK_TEST_ODOO_PGUSER", "rollback_odoo"),
    "db_password": os.environ.get("ROLLBACK_TEST_ODOO_PGPASSWORD", "rollback_odoo"),
}
V1, V2 = "16.0.1.0.0", "16.0.2.0.0"
PROBE, UI = "rb_deploy_probe", "rb_deploy_probe_ui"
EXIT_REFUSED, EXIT_PAUSED, EXIT_ROLLED_BACK = 3, 5, 6


# -- the addon repository -------------------------------------------------------------------------
def _manifest(name: str, version: str, depends: list[str], data: list[str]) -> str:
    return repr(
        {
            "name": name,
            "version": version,
            "license": "LGPL-3",
            "depends": depends,
            "data": data,
            "installable": True,
        }
    )


def _model(with_code: bool) -> str:
    code = '    code = fields.Char(string="Code")\n' if with_code else ""
    return (
        "from odoo import fields, models\n\n\n"
        "class RbDeployProbe(models.Model):\n"
        '    _name = "rb.deploy.probe"\n'
        '    _description = "Deployment probe"\n\n'
        "    name = fields.Char(required=True)\n" + code
    )


def _record(extra_field: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<odoo>\n'
        '    <record id="probe_one" model="rb.deploy.probe">\n'
        '        <field name="name">one</field>\n' + extra_field + "    </record>\n</odoo>\n"
    )


def _write_revision(root: Path, version: str, with_code: bool, ui_field: str) -> None:
    probe, ui = root / PROBE, root / UI
    for folder in (probe / "models", probe / "security", ui / "data"):
        folder.mkdir(parents=True, exist_ok=True)
    (probe / "__init__.py").write_text("from . import models\n")
    (probe / "models" / "__init__.py").write_text("from . import rb_deploy_probe\n")
    (probe / "models" / "rb_deploy_probe.py").write_text(_model(with_code))
    (probe / "security" / "ir.model.access.csv").write_text(
        "id,name,model_id:id,group_id:id,perm_read,perm_write,perm_create,perm_unlink\n"
        "access_rb_deploy_probe,rb.deploy.probe,model_rb_deploy_probe,base.group_user,1,1,1,1\n"
    )
    (probe / "__manifest__.py").write_text(
        _manifest("Deploy probe", version, ["base"], ["security/ir.model.access.csv"])
    )
    (ui / "__init__.py").write_text("")
    (ui / "__manifest__.py").write_text(_manifest("Deploy probe data", version, [PROBE], ["data/probe_data.xml"]))
    (ui / "data" / "probe_data.xml").write_text(_record(ui_field))
    (root / "README.md").write_text(f"Test addons, version {version}\n")


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout.strip()


@dataclass
class AddonRepo:
    path: Path
    rev1: str
    broken: str
    good: str
    readme_only: str


@pytest.fixture(scope="module")
def addon_repo(tmp_path_factory: pytest.TempPathFactory) -> AddonRepo:
    root = tmp_path_factory.mktemp("addons-source")
    git(root, "init", "--quiet", "--initial-branch=main")
    git(root, "config", "user.email", "tests@example.com")
    git(root, "config", "user.name", "Tests")

    def commit(message: str) -> str:
        git(root, "add", "--all")
        git(root, "commit", "--quiet", "-m", message)
        return git(root, "rev-parse", "HEAD")

    _write_revision(root, V1, with_code=False, ui_field="")
    rev1 = commit("revision 1")
    (root / "README.md").write_text("Test addons, only the README changed\n")
    readme_only = commit("README only")
    git(root, "checkout", "--quiet", "--detach", rev1)
    _write_revision(root, V2, with_code=True, ui_field='        <field name="no_such_field">x</field>\n')
    broken = commit("revision 2: its update raises")
    git(root, "checkout", "--quiet", "--detach", rev1)
    _write_revision(root, V2, with_code=True, ui_field='        <field name="code">ONE</field>\n')
    good = commit("revision 2b: good")
    git(root, "checkout", "--quiet", "--detach", rev1)
    return AddonRepo(root, rev1, broken, good, readme_only)


# -- real Odoo ------------------------------------------------------------------------------------
def write_odoo_conf(path: Path, addons: Path, data_dir: Path) -> Path:
    options = {
        **ODOO_PG,
        "addons_path": f"{ODOO_SRC / 'addons'},{ODOO_SRC / 'odoo' / 'addons'},{addons}",
        "data_dir": str(data_dir),
        "without_demo": "all",
        "log_level": "info",
    }
    path.write_text("[options]\n" + "".join(f"{k} = {v}\n" for k, v in options.items()))
    return path


@dataclass
class Template:
    name: str
    filestore: Path


@pytest.fixture(scope="module")
def template_db(addon_repo: AddonRepo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    """A database with base and the addon at revision 1, made once (Odoo needs ~20 s) and copied per test."""
    if not (ODOO_SRC / "odoo-bin").exists():
        pytest.fail("Odoo 16 sources are needed: set ODOO_SRC (see .venv/test.env)")
    root = tmp_path_factory.mktemp("odoo-template")
    conf = write_odoo_conf(root / "odoo.conf", addon_repo.path, root / "data")
    name = f"{TEST_DB_PREFIX}deploytpl_{uuid.uuid4().hex[:8]}"
    try:
        result = subprocess.run(
            [
                sys.executable,
                str(ODOO_SRC / "odoo-bin"),
                "-c",
                str(conf),
                "-d",
                name,
                "-i",
                UI,
                "--stop-after-init",
                "--no-http",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        filestore = root / "data" / "filestore" / name
        filestore.mkdir(parents=True, exist_ok=True)
        yield Template(name, filestore)
    finally:
        drop_database(name)


# -- the stand-in Odoo container ------------------------------------------------------------------
class StandIn(ComposeStandIn):
    def log_at_next_start(self, text: str) -> None:
        """What the stand-in Odoo prints on its log when it starts again."""
        (self.www / "odoo.log").write_text(text)


@pytest.fixture
def stand_in(docker_image: str, tmp_path: Path) -> Iterator[StandIn]:
    """A compose project's containers: db (never touched), odoo (httpd serving the health URL, printing
    www/odoo.log first, as Odoo prints its log) and nginx."""
    started = start_compose_stand_in(
        docker_image,
        tmp_path,
        "rbdeploy",
        lambda port: ["/bin/sh", "-c", f"cat /www/odoo.log 2>/dev/null; exec httpd -f -p 127.0.0.1:{port} -h /www"],
    )
    stand_in = StandIn(**vars(started))
    try:
        yield stand_in
    finally:
        remove_compose_stand_in(stand_in)


# -- one deployment's world -----------------------------------------------------------------------
@dataclass
class DeployEnv:
    helper: HelperEnv
    repo: AddonRepo
    code: Path
    db: str
    stand_in: StandIn

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.helper.run(*args, timeout=900)

    def deploy_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        result = self.run("deploy", *args, "--json")
        assert result.stdout.strip(), result.stderr
        return result.returncode, json.loads(result.stdout)

    def head(self) -> str:
        return git(self.code, "rev-parse", "HEAD")

    def query(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        conn = pg_connect(self.db)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()
        finally:
            conn.close()

    def versions(self) -> dict[str, str]:
        rows = self.query(
            "SELECT name, latest_version FROM ir_module_module WHERE name IN %s AND state = 'installed'",
            ((PROBE, UI),),
        )
        return dict(rows)

    def probe_columns(self) -> set[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", ("rb_deploy_probe",)
        )
        return {row[0] for row in rows}

    def journal(self) -> dict[str, Any]:
        return self.helper.run_json("journal", "--limit", "1000")

    def operations(self, kind: str) -> list[dict[str, Any]]:
        return [op for op in self.journal()["operations"] if op["kind"] == kind]

    def snapshots(self) -> list[dict[str, Any]]:
        return self.helper.run_json("list")


@pytest.fixture
def deploy_env(template_db: Template, addon_repo: AddonRepo, stand_in: StandIn, tmp_path: Path) -> Iterator[DeployEnv]:
    code = tmp_path / "code"
    subprocess.run(
        ["git", "-c", "advice.detachedHead=false", "clone", "--quiet", str(addon_repo.path), str(code)], check=True
    )
    git(code, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", addon_repo.rev1)
    name = f"{TEST_DB_PREFIX}deploy_{uuid.uuid4().hex[:8]}"
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(template_db.name), sql.Identifier(ODOO_PG["db_user"])
                )
            )
    finally:
        conn.close()
    data_dir = tmp_path / "odoo-data"
    filestore = data_dir / "filestore" / name
    shutil.copytree(template_db.filestore, filestore)
    odoo_conf = write_odoo_conf(tmp_path / "odoo.conf", code, data_dir)
    sections: dict[str, dict[str, Any]] = {
        "database": {"name": name, **PG},
        "filestore": {"path": str(filestore)},
        "storage": {"path": str(tmp_path / "storage")},
        "counts": {"tables": ["res_partner", "rb_deploy_probe"]},
        "code": {"path": str(code)},
        "services": {"backend": "docker", "stop_timeout": 2, "docker": {"project": stand_in.project}},
        "health": {"url": stand_in.url, "attempts": 40, "interval": 0.25, "timeout": 2},
        "standby": {"enabled": False},  # the standby's own tests cover it; here it would race the rollback
        "deploy": {
            "update_command": [
                sys.executable,
                str(ODOO_SRC / "odoo-bin"),
                "-c",
                str(odoo_conf),
                "-d",
                "{database}",
                "-u",
                "{modules}",
                "--stop-after-init",
                "--no-http",
            ],
            "analysis_seconds": 0,
            "analysis_interval": 1,
        },
    }
    helper = HelperEnv(tmp_path=tmp_path, sections=sections, db=OdooLikeDatabase(name, 0, 0), filestore=filestore)
    helper.write()
    try:
        yield DeployEnv(helper, addon_repo, code, name, stand_in)
    finally:
        for leftover in list_databases(name):
            drop_database(leftover)


REV1_STATE = {PROBE: V1, UI: V1}
REV2_STATE = {PROBE: V2, UI: V2}


def assert_at_revision_1(env: DeployEnv) -> None:
    assert env.head() == env.repo.rev1
    assert env.versions() == REV1_STATE
    assert "code" not in env.probe_columns()


# -- the tests ------------------------------------------------------------------------------------
def test_broken_deploy_is_rolled_back_by_itself(deploy_env: DeployEnv) -> None:
    env = deploy_env

    status, doc = env.deploy_json("--to", env.repo.broken, "--changed", "--yes")

    assert status == EXIT_ROLLED_BACK, doc
    assert doc["outcome"] == "rolled_back"
    assert doc["modules"] == [PROBE, UI]
    # Database and code are the first revision's again, though the update had committed rb_deploy_probe.
    assert_at_revision_1(env)
    assert git(env.code, "status", "--porcelain", "--untracked-files=no") == ""
    assert env.stand_in.states() == {"db": "running", "odoo": "running", "nginx": "running"}
    # The journal says why, and links the rollback.
    deploy_op = env.operations("deploy")[0]
    assert deploy_op["state"] == "undone"
    data = deploy_op["data"]
    assert data["outcome"] == "rolled_back"
    assert data["snapshot"] == doc["snapshot"] and data["from_revision"] == env.repo.rev1
    assert data["to_revision"] == env.repo.broken and data["modules"] == [PROBE, UI]
    update = next(c for c in data["analysis"] if c["name"] == "update")
    assert update["ok"] is False and "no_such_field" in update["detail"]
    assert "module update failed" in data["reason"]
    restore_op = next(op for op in env.operations("restore") if op["id"] == data["rollback_operation"])
    assert restore_op["state"] == "done" and restore_op["data"]["snapshot"] == doc["snapshot"]
    # The database the rollback replaced (kept aside) was really half-updated by the broken revision:
    # Odoo committed rb_deploy_probe's new column before rb_deploy_probe_ui failed.
    kept = restore_op["data"]["result"]["kept_as"]
    assert "code" in DeployEnv(env.helper, env.repo, env.code, kept, env.stand_in).probe_columns()
    steps = [(e["step"], e["status"]) for e in env.journal()["events"] if e["operation_id"] == deploy_op["id"]]
    assert ("update", "failed") in steps and ("rollback", "done") in steps and ("start", "start") not in steps
    assert "no_such_field" in Path(doc["update_log"]).read_text()


def test_good_deploy_stays_and_reuses_a_recent_snapshot(deploy_env: DeployEnv) -> None:
    env = deploy_env
    env.helper.write(deploy={"reuse_snapshot_minutes": 60})
    before = env.helper.run_json("snapshot", "--kind", "pre_deploy", "--verify")

    status, doc = env.deploy_json("--to", env.repo.good, "--changed", "--yes")

    assert status == 0, doc
    assert doc["outcome"] == "deployed"
    assert doc["snapshot"] == before["id"] and doc["snapshot_reused"] is True
    assert env.head() == env.repo.good
    assert env.versions() == REV2_STATE
    assert env.query("SELECT name, code FROM rb_deploy_probe") == [("one", "ONE")]
    assert {c["name"]: c["ok"] for c in doc["analysis"]} == {
        "update": True,
        "health": True,
        "response_time": True,
        "log": True,
        "smoke": True,
    }
    deploy_op = env.operations("deploy")[0]
    assert deploy_op["state"] == "done" and deploy_op["data"]["outcome"] == "deployed"
    assert deploy_op["data"]["rollback_operation"] is None
    assert [s["name"] for s in doc["steps"]] == [
        "preflight",
        "snapshot",
        "stop",
        "checkout",
        "update",
        "start",
        "analysis",
    ]
    assert len(env.snapshots()) == 1  # reused, none taken


def test_plan_without_yes_changes_nothing(deploy_env: DeployEnv) -> None:
    env = deploy_env

    result = env.run("deploy", "--to", env.repo.broken, "--changed", "--json")

    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["from_revision"] == env.repo.rev1 and plan["to_revision"] == env.repo.broken
    assert plan["modules"] == [PROBE, UI] and plan["snapshot"] == {"take": "pre_deploy"}
    assert f"{PROBE},{UI}" in plan["update_command"]
    human = env.run("deploy", "--to", env.repo.broken, "--modules", PROBE).stdout
    assert "--yes" in human and PROBE in human
    assert_at_revision_1(env)
    assert env.snapshots() == [] and env.operations("deploy") == []


def _assert_refused(env: DeployEnv, args: list[str], message: str, status: int = EXIT_REFUSED) -> None:
    result = env.run("deploy", *args, "--yes")
    assert result.returncode == status, (result.stdout, result.stderr)
    assert message in result.stderr
    assert env.versions() == REV1_STATE and env.snapshots() == []


def test_bad_input_is_refused_and_changes_nothing(deploy_env: DeployEnv) -> None:
    env = deploy_env
    _assert_refused(env, ["--to", "no-such-branch", "--changed"], "does not have revision 'no-such-branch'")
    _assert_refused(env, ["--to", env.repo.rev1, "--changed"], "already at")
    _assert_refused(env, ["--to", env.repo.good, "--modules", "sale"], "not installed")
    _assert_refused(env, ["--to", env.repo.good], "--modules a,b or --changed", status=2)

    readme = env.code / "README.md"
    readme.write_text("edited on the server\n")
    _assert_refused(env, ["--to", env.repo.good, "--changed"], "is not clean (README.md)")
    assert readme.read_text() == "edited on the server\n"
    git(env.code, "checkout", "--", "README.md")

    env.stand_in.containers["odoo"].stop(timeout=1)
    _assert_refused(env, ["--to", env.repo.good, "--changed"], "not healthy now")
    assert env.stand_in.states()["odoo"] == "exited"
    assert env.head() == env.repo.rev1
    assert all(op["state"] == "failed" for op in env.operations("deploy"))


def test_traceback_in_the_service_log_rolls_back_a_good_update(deploy_env: DeployEnv) -> None:
    env = deploy_env
    env.stand_in.log_at_next_start(
        f"2026-11-25 14:00:00,000 7 CRITICAL {env.db} odoo.service.server: Failed to load registry\n"
        "Traceback (most recent call last):\n"
        '  File "/opt/odoo/odoo/modules/registry.py", line 90, in new\n'
        "    odoo.modules.load_modules(registry, force_demo, status, update_module)\n"
        "psycopg2.errors.UndefinedColumn: column rb_deploy_probe.code does not exist\n"
    )

    status, doc = env.deploy_json("--to", env.repo.good, "--changed", "--yes")

    assert status == EXIT_ROLLED_BACK, doc
    log = next(c for c in doc["analysis"] if c["name"] == "log")
    assert log["ok"] is False and log["trigger"] == "immediate"
    assert "UndefinedColumn" in log["detail"]
    assert_at_revision_1(env)
    assert env.operations("deploy")[0]["data"]["outcome"] == "rolled_back"


def test_error_lines_without_traceback_pause_for_the_operator(deploy_env: DeployEnv) -> None:
    env = deploy_env
    env.stand_in.log_at_next_start(
        f"2026-11-25 14:00:00,000 7 INFO {env.db} odoo.modules.loading: Modules loaded.\n"
        f"2026-11-25 14:00:01,000 7 ERROR {env.db} odoo.http: a report template is missing\n"
    )

    status, doc = env.deploy_json("--to", env.repo.good, "--changed", "--yes")

    assert status == EXIT_PAUSED, doc
    assert doc["outcome"] == "paused" and f"restore {doc['snapshot']} --yes" in doc["reason"]
    log = next(c for c in doc["analysis"] if c["name"] == "log")
    assert log["trigger"] == "inconclusive" and "report template is missing" in log["detail"]
    # Nothing was rolled back: the operator decides.
    assert env.head() == env.repo.good and env.versions() == REV2_STATE
    assert env.operations("restore") == []
    assert env.operations("deploy")[0]["data"]["outcome"] == "paused"


def test_without_auto_rollback_a_broken_update_pauses(deploy_env: DeployEnv) -> None:
    env = deploy_env

    status, doc = env.deploy_json("--to", env.repo.broken, "--changed", "--no-auto-rollback", "--yes")

    assert status == EXIT_PAUSED, doc
    assert "automatic rollback is off" in doc["reason"] and "the services are stopped" in doc["reason"]
    assert env.stand_in.states()["odoo"] == "exited"
    assert env.head() == env.repo.broken and env.operations("restore") == []


class SteppedClock:
    """Time that moves only when the analysis sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_analysis_checks_every_interval_for_the_window(deploy_env: DeployEnv) -> None:
    env = deploy_env
    env.helper.write(deploy={"analysis_seconds": 50, "analysis_interval": 20})
    cfg = load_config(env.helper.config_path)
    clock = SteppedClock()
    journal = Journal(cfg.storage.journal_path)

    result = deploy(cfg, DeployRequest(env.repo.good, changed=True), journal, clock=Clock(clock.monotonic, clock.sleep))

    assert result.outcome == DEPLOYED, result.reason
    assert clock.sleeps == [20, 20, 10]
    rounds = [e for e in journal.events(operation_id=result.operation) if e.step == "analysis" and e.status == "info"]
    assert len(rounds) == 4 and all(r.data["healthy"] for r in rounds)


def test_changed_modules_are_the_addons_whose_files_differ(addon_repo: AddonRepo) -> None:
    assert changed_modules(addon_repo.path, addon_repo.rev1, addon_repo.broken) == [PROBE, UI]
    assert changed_modules(addon_repo.path, addon_repo.rev1, addon_repo.readme_only) == []


@pytest.mark.parametrize(
    ("deploy_section", "message"),
    [
        ({"update_command": ["odoo-bin", "-u", "all"]}, "must contain {modules}"),
        ({"update_command": ["odoo-bin", "-d", "{db}", "-u", "{modules}"]}, "unknown placeholder {db}"),
        ({"update_command": ["odoo-bin", "-u", "{modules"]}, "is not a valid template"),
        ({"update_command": "odoo-bin -u {modules}"}, "deploy.update_command must be a list of strings"),
        ({"analysis_seconds": -1}, "deploy.analysis_seconds must be 0 (no analysis) or more"),
        ({"analysis_interval": 0}, "deploy.analysis_interval must be greater than 0"),
        ({"reuse_snapshot_minutes": -5}, "deploy.reuse_snapshot_minutes must be 0"),
    ],
)
def test_bad_deploy_configuration_is_a_clear_error(
    helper_env: HelperEnv, deploy_section: dict[str, Any], message: str
) -> None:
    helper_env.write(deploy=deploy_section)

    result = helper_env.run("deploy", "--to", "HEAD", "--changed")

    assert result.returncode == 2 and message in result.stderr


def test_deploy_needs_an_update_command_and_a_code_folder(helper_env: HelperEnv) -> None:
    result = helper_env.run("deploy", "--to", "HEAD", "--changed")
    assert result.returncode == 2 and "[deploy] update_command" in result.stderr

    helper_env.write(deploy={"update_command": ["odoo-bin", "-u", "{modules}"]})
    result = helper_env.run("deploy", "--to", "HEAD", "--changed")
    assert result.returncode == 2 and "[code] path" in result.stderr


def test_an_operator_at_the_terminal_decides_an_inconclusive_deployment(deploy_env: DeployEnv) -> None:
    env = deploy_env
    env.stand_in.log_at_next_start(f"2026-11-25 14:00:01,000 7 ERROR {env.db} odoo.http: a report is missing\n")
    cfg = load_config(env.helper.config_path)
    questions: list[str] = []

    def operator(question: str) -> bool:
        questions.append(question)
        return True

    result = deploy(
        cfg, DeployRequest(env.repo.good, modules=(PROBE,)), Journal(cfg.storage.journal_path), ask=operator
    )

    assert len(questions) == 1 and "report is missing" in questions[0] and result.snapshot in questions[0]
    assert result.outcome == "rolled_back" and "the operator chose to roll back" in result.reason
    assert result.rollback_operation is not None
    assert_at_revision_1(env)


def test_a_running_deployment_blocks_another_and_a_killed_one_is_closed(deploy_env: DeployEnv) -> None:
    env = deploy_env
    storage = Path(env.helper.sections["storage"]["path"])
    journal = Journal(storage / "journal.sqlite3")
    # A running deployment holds the operation lock (here this process's, as a deployment's own).
    with operation_lock(storage, journal, "deploy", database=None):
        running = journal.begin("deploy", env.db, {"pid": os.getpid()})
        result = env.run("deploy", "--to", env.repo.good, "--changed", "--yes")
        plan = env.run("deploy", "--to", env.repo.good, "--changed")

    assert result.returncode == EXIT_REFUSED and "a deploy is running (pid" in result.stderr
    assert plan.returncode == EXIT_REFUSED and f"deployment {running} is running" in plan.stderr
    journal.finish(running, "done")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = journal.begin("deploy", env.db, {"pid": gone.pid})
    journal.update(killed, {"owner": {"pid": gone.pid, "start": None, "host": socket.gethostname()}})  # as it ran
    journal.event(killed, "update", "start")
    assert env.run("deploy", "--to", env.repo.broken, "--changed").returncode == 0  # a plan closes nothing
    assert journal.operation(killed).state == "running"

    status, doc = env.deploy_json("--to", env.repo.good, "--changed", "--yes")

    assert status == 0, doc
    closed = journal.operation(killed)
    assert closed.state == "failed" and closed.data["outcome"] == "failed"
    assert journal.events(operation_id=killed)[-1].message.startswith(f"interrupted: process {gone.pid} ended")
    assert "last step: update start" in journal.events(operation_id=killed)[-1].message


def test_on_a_terminal_the_operator_is_asked_and_may_keep_the_deployment(deploy_env: DeployEnv) -> None:
    env = deploy_env
    env.stand_in.log_at_next_start(f"2026-11-25 14:00:01,000 7 ERROR {env.db} odoo.http: a report is missing\n")
    env.helper.write()
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odoo_rollback.cli",
            "--config",
            str(env.helper.config_path),
            "deploy",
            "--to",
            env.repo.good,
            "--changed",
            "--yes",
        ],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    seen = b""
    try:
        while b"[y/N]" not in seen:
            ready, _, _ = select.select([controller], [], [], 300)
            assert ready, f"no question was asked: {seen.decode(errors='replace')[-2000:]}"
            seen += os.read(controller, 65536)
        os.write(controller, b"n\n")
        while True:
            ready, _, _ = select.select([controller], [], [], 300)
            assert ready, seen.decode(errors="replace")[-2000:]
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            seen += chunk
        status = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)

    text = seen.decode(errors="replace")
    assert "report is missing" in text and "Roll back to snapshot" in text
    assert status == 0 and "DEPLOYED" in text and "kept by the operator" in text
    assert env.head() == env.repo.good and env.versions() == REV2_STATE
    assert env.operations("restore") == []


def in_fresh_pid_namespace(*argv: str) -> list[str]:
    """As ``docker run`` starts each command: in a new PID namespace, where the helper gets the same
    small pid every time (2: the shell is 1)."""
    return ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", '"$@"; true', "sh", *argv]


def test_a_killed_deployment_never_blocks_the_next_that_gets_its_pid(deploy_env: DeployEnv) -> None:
    env = deploy_env
    config = str(env.helper.config_path)
    deploy_args = ("deploy", "--to", env.repo.good, "--changed", "--yes")
    killed = subprocess.run(
        in_fresh_pid_namespace(sys.executable, str(CRASH_RUNNER), "update:start", "--config", config, *deploy_args),
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    (dead,) = env.operations("deploy")
    assert dead["state"] == "running", killed.stderr
    second = subprocess.run(
        in_fresh_pid_namespace(sys.executable, "-m", "odoo_rollback.cli", "--config", config, *deploy_args),
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
    )
    assert "is running" not in second.stderr, second.stderr
    closed = next(o for o in env.operations("deploy") if o["id"] == dead["id"])
    assert closed["state"] == "failed", closed  # closed as interrupted by the second
