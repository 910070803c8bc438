"""The installation files in helper/deploy: systemd units, the polkit rule, the docker compose example.

Nothing here is started for real (no systemd as PID 1, no registry images): the units are checked by
``systemd-analyze`` when it is installed, and by reading them; the compose example is read and its
paths are checked against the helper configuration that goes with it, loaded by the helper itself.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from odoo_rollback.cli import build_parser
from odoo_rollback.config import Config, parse_config, tomllib

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SYSTEMD = DEPLOY / "systemd"
COMPOSE = DEPLOY / "docker-compose"


def load_example(path: Path) -> tuple[Config, str]:
    """The example configuration, loaded by the helper, and its database password file.

    The password file exists only where the example is deployed, and the helper reads it at load
    time: it is taken out here and checked by the callers against where the deployment puts it.
    """
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    password_file = data["database"].pop("password_file")
    return parse_config(data, path.parent, source=path), password_file


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values, in order]}} (keys may repeat in systemd units)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} is outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values and len(values) == 1, f"[{section}] {key} is missing or repeated"
    return values[0]


@pytest.fixture(scope="module")
def systemd_config() -> Config:
    cfg, password_file = load_example(SYSTEMD / "odoo-rollback.toml")
    assert password_file.startswith("/etc/odoo-rollback/")
    return cfg


def test_service_is_hardened_and_runs_as_its_own_user(systemd_config: Config) -> None:
    unit = read_unit(SYSTEMD / "odoo-rollback.service")
    assert one(unit, "Service", "User") == "odoo-rollback"
    assert one(unit, "Service", "ExecStart").split()[-1] == "serve"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
    }.items():
        assert one(unit, "Service", key) == value, key
    # strict makes everything read-only: exactly what the helper writes is given back.
    writable = {Path(p) for values in unit["Service"]["ReadWritePaths"] for p in values.split()}
    assert writable == {systemd_config.storage.path, systemd_config.filestore.path.parent}
    assert one(unit, "Service", "Environment") == "ODOO_ROLLBACK_CONFIG=/etc/odoo-rollback/odoo-rollback.toml"
    assert "odoo-rollback.socket" in one(unit, "Unit", "Requires")


def test_socket_is_the_configured_one_and_only_the_odoo_group_may_connect(systemd_config: Config) -> None:
    unit = read_unit(SYSTEMD / "odoo-rollback.socket")
    assert Path(one(unit, "Socket", "ListenStream")) == systemd_config.api.socket
    assert one(unit, "Socket", "SocketGroup") == "odoo"
    assert one(unit, "Socket", "SocketMode") == "0660"
    assert one(unit, "Socket", "SocketUser") == "odoo-rollback"


def test_polkit_rule_names_the_configured_units(systemd_config: Config) -> None:
    rule = (SYSTEMD / "50-odoo-rollback.rules").read_text(encoding="utf-8")
    assert systemd_config.services.backend == "systemd"
    units_line = next(line for line in rule.splitlines() if "var units" in line)
    assert all(f'"{unit}"' in units_line for unit in systemd_config.services.units)
    assert 'subject.user == "odoo-rollback"' in rule


def systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed; the unit files are still checked by reading them")
    return binary


def units_with_a_real_executable(tmp_path: Path) -> tuple[Path, Path]:
    # verify insists that ExecStart's program exists; /usr/local/bin/odoo-rollback is not installed here.
    program = tmp_path / "odoo-rollback"
    program.write_text("#!/bin/sh\n", encoding="utf-8")
    program.chmod(0o755)
    service = tmp_path / "odoo-rollback.service"
    text = (SYSTEMD / "odoo-rollback.service").read_text(encoding="utf-8")
    assert "ExecStart=/usr/local/bin/odoo-rollback " in text
    service.write_text(text.replace("ExecStart=/usr/local/bin/odoo-rollback ", f"ExecStart={program} "))
    socket_unit = tmp_path / "odoo-rollback.socket"
    shutil.copy(SYSTEMD / "odoo-rollback.socket", socket_unit)
    return service, socket_unit


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    binary = systemd_analyze()
    service, socket_unit = units_with_a_real_executable(tmp_path)
    result = subprocess.run(
        [binary, "verify", "--man=no", str(service), str(socket_unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_systemd_analyze_security_rates_the_service_ok(tmp_path: Path) -> None:
    binary = systemd_analyze()
    service, _ = units_with_a_real_executable(tmp_path)
    # --threshold=30: an exposure of 3.0 out of 10 at most ("OK"); without hardening a service rates 9.6.
    result = subprocess.run(
        [binary, "security", "--offline=true", "--threshold=30", str(service)],
        capture_output=True,
        text=True,
        check=False,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze cannot rate unit files offline (systemd < 250)")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# -- docker compose ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((COMPOSE / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def compose_example() -> tuple[Config, str]:
    return load_example(COMPOSE / "odoo-rollback.toml")


@pytest.fixture(scope="module")
def compose_config(compose_example: tuple[Config, str]) -> Config:
    return compose_example[0]


def mounts(service: dict[str, Any]) -> dict[PurePosixPath, str]:
    """{path in the container: volume name or host path} of a service's short-syntax volumes."""
    found = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        found[PurePosixPath(target)] = source
    return found


def mount_of(service: dict[str, Any], path: Path) -> tuple[PurePosixPath, str]:
    """The mount that holds *path* in the container (the deepest one)."""
    inside = PurePosixPath(path)
    holders = [(target, source) for target, source in mounts(service).items() if inside.is_relative_to(target)]
    assert holders, f"nothing is mounted at or above {path}"
    return max(holders, key=lambda item: len(item[0].parts))


def secret_path(service: dict[str, Any], name: str) -> PurePosixPath:
    assert name in service.get("secrets", []), f"secret {name} is not given to the service"
    return PurePosixPath("/run/secrets") / name


def test_compose_has_the_stack_and_the_helper(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"db", "odoo", "nginx", "rollback"}
    rollback = compose["services"]["rollback"]
    context = (COMPOSE / rollback["build"]["context"]).resolve()
    assert (context / "pyproject.toml").is_file()
    assert context / rollback["build"]["dockerfile"] == (COMPOSE / "Dockerfile").resolve()
    assert mounts(rollback)[PurePosixPath("/var/run/docker.sock")] == "/var/run/docker.sock"
    assert rollback["healthcheck"]["test"] == ["CMD", "odoo-rollback", "health"]
    assert "no-new-privileges:true" in rollback["security_opt"]


def test_compose_paths_agree_with_the_helper_config(
    compose: dict[str, Any], compose_example: tuple[Config, str]
) -> None:
    services = compose["services"]
    rollback, odoo = services["rollback"], services["odoo"]
    cfg, password_file = compose_example
    # The API socket's folder is one volume, at the same path in the helper and in Odoo.
    assert cfg.api.socket is not None
    target, volume = mount_of(rollback, cfg.api.socket)
    assert volume in compose["volumes"] and mounts(odoo)[target] == volume
    # The filestore is the odoo service's own data volume, at the same path.
    target, volume = mount_of(rollback, cfg.filestore.path)
    assert volume in compose["volumes"] and mounts(odoo)[target] == volume
    # Snapshots live in a volume of their own, that no other service mounts.
    target, volume = mount_of(rollback, cfg.storage.path)
    assert volume in compose["volumes"] and target == PurePosixPath(cfg.storage.path)
    assert all(volume not in mounts(s).values() for name, s in services.items() if name != "rollback")
    # The configuration file is where the service's environment says.
    config_in_container = PurePosixPath(rollback["environment"]["ODOO_ROLLBACK_CONFIG"])
    assert mounts(rollback)[config_in_container] == "./odoo-rollback.toml"
    # Secrets: the files the helper reads are compose secrets given to it; Odoo shares the API one.
    for path, name in (
        (password_file, "db_password"),
        (cfg.api.secret_file, "api_secret"),
        (cfg.smoke.credentials_file, "smoke_password"),
    ):
        assert PurePosixPath(str(path)) == secret_path(rollback, name)
    assert secret_path(odoo, "api_secret") == PurePosixPath(str(cfg.api.secret_file))
    odoo_conf = (COMPOSE / "odoo.conf").read_text(encoding="utf-8")
    assert f"deployment_rollback_secret_file = {cfg.api.secret_file}" in odoo_conf


def test_compose_services_agree_with_the_helper_config(compose: dict[str, Any], compose_config: Config) -> None:
    cfg = compose_config
    assert cfg.services.backend == "docker"
    assert cfg.services.docker.project == compose["name"]
    stopped = set(cfg.services.docker.services)
    # The helper stops the web tier only: never the database, never itself.
    assert stopped == {"odoo", "nginx"} and stopped <= set(compose["services"])
    assert cfg.database.host == "db" and cfg.database.user == compose["services"]["db"]["environment"]["POSTGRES_USER"]
    health = urlsplit(cfg.health.url or "")
    assert health.hostname == "odoo" and health.port == 8069
    assert cfg.smoke.url == "http://odoo:8069"


def test_the_snapshot_timer_runs_a_verified_scheduled_snapshot_as_hardened_as_the_service() -> None:
    timer = read_unit(SYSTEMD / "odoo-rollback-snapshot.timer")
    service = read_unit(SYSTEMD / "odoo-rollback-snapshot.service")
    # No Unit= in the timer: it starts the service of its own name.
    assert "Unit" not in timer["Timer"] and one(timer, "Timer", "Persistent") == "yes"
    assert one(timer, "Install", "WantedBy") == "timers.target"
    assert one(service, "Service", "Type") == "oneshot"
    # The command line is one the helper accepts, for a verified snapshot of kind "scheduled".
    argv = shlex.split(one(service, "Service", "ExecStart"))
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.kind, args.verify) == ("snapshot", "scheduled", True)
    served = read_unit(SYSTEMD / "odoo-rollback.service")["Service"]
    for key in ("User", "Group", "SupplementaryGroups", "Environment", "UMask", "ReadWritePaths", "ProtectSystem"):
        assert service["Service"][key] == served[key], key
    hardening = {k for k in served if k.startswith(("Protect", "Restrict", "Private", "NoNew", "SystemCall"))}
    assert {k: service["Service"].get(k) for k in hardening} == {k: served[k] for k in hardening}
    binary = shutil.which("systemd-analyze")
    if binary:
        calendar = subprocess.run(
            [binary, "calendar", one(timer, "Timer", "OnCalendar")], capture_output=True, text=True, check=False
        )
        assert calendar.returncode == 0, calendar.stderr
