"""The helper installs as users install it: a wheel into a fresh virtualenv, and ``pipx install ./helper``.

Building needs the build backend (setuptools) and installing needs the dependencies, both from pip's
configured index; when pip cannot reach any index the tests are skipped and say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import odoo_rollback
import pytest

HELPER = Path(__file__).resolve().parent.parent
NO_INDEX_HINTS = (
    "No matching distribution found",
    "Could not find a version",
    "NewConnectionError",
    "Network is unreachable",
)
# Without the test run's PYTHONPATH (the source tree): only what was installed may answer.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, env=env or CLEAN_ENV, cwd=cwd)


def skip_when_offline(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0 and any(hint in result.stderr + result.stdout for hint in NO_INDEX_HINTS):
        pytest.skip(f"{what}: pip cannot reach a package index here:\n{result.stderr[-800:]}")


def fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin"


def helper_source(parent: Path) -> Path:
    """A copy of the helper folder: a build writes egg-info beside the sources, not in the work tree."""
    target = parent / "helper"
    shutil.copytree(HELPER, target, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "tests", "build"))
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = helper_source(tmp_path_factory.mktemp("source"))
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(source)])
    skip_when_offline(result, "building the wheel")
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("odoo_rollback-*.whl")
    return built


def test_wheel_installs_into_a_fresh_venv_and_prints_its_version(wheel: Path, tmp_path: Path) -> None:
    assert wheel.name.startswith(f"odoo_rollback-{odoo_rollback.__version__}-py3-none-any")
    bin_dir = fresh_venv(tmp_path / "venv")
    result = run([str(bin_dir / "python"), "-m", "pip", "install", str(wheel)])
    skip_when_offline(result, "installing the wheel's dependencies")
    assert result.returncode == 0, result.stderr
    version = run([str(bin_dir / "odoo-rollback"), "--version"], cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"odoo-rollback {odoo_rollback.__version__}"
    # The typing marker is package data, declared in pyproject.toml.
    where = "import odoo_rollback, pathlib; print(pathlib.Path(odoo_rollback.__file__).parent)"
    installed = Path(run([str(bin_dir / "python"), "-c", where], cwd=tmp_path).stdout.strip())
    assert installed.is_relative_to(tmp_path / "venv")
    assert (installed / "py.typed").is_file()
    # Its dependencies came with it: a command that needs the database driver gets as far as the config.
    missing_config = run([str(bin_dir / "odoo-rollback"), "--config", str(tmp_path / "none.toml"), "counts"])
    assert missing_config.returncode == 2 and "does not exist" in missing_config.stderr
    assert run([str(bin_dir / "python"), "-c", "import psycopg2, docker, tqdm"]).returncode == 0


def test_pipx_install_of_the_helper_folder(tmp_path: Path) -> None:
    tools = fresh_venv(tmp_path / "pipx-venv")
    result = run([str(tools / "python"), "-m", "pip", "install", "pipx"])
    skip_when_offline(result, "installing pipx")
    assert result.returncode == 0, result.stderr
    env = dict(CLEAN_ENV, PIPX_HOME=str(tmp_path / "pipx-home"), PIPX_BIN_DIR=str(tmp_path / "bin"))
    env["PIPX_MAN_DIR"] = str(tmp_path / "man")
    # "pipx install ./helper", from the folder that holds it, as the README says.
    source = helper_source(tmp_path / "checkout")
    result = run([str(tools / "pipx"), "install", "./helper"], env=env, cwd=source.parent)
    skip_when_offline(result, "pipx install ./helper")
    assert result.returncode == 0, result.stdout + result.stderr
    version = run([str(tmp_path / "bin" / "odoo-rollback"), "--version"], env=env, cwd=tmp_path)
    assert version.stdout.strip() == f"odoo-rollback {odoo_rollback.__version__}", version.stderr
