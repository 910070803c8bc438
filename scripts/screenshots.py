# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The README's screenshots, taken in headless Chromium from a real running instance.

A fresh database with Invoicing, the Costa Rican localization, their demo data and the module installed (what
an administrator has), a real ``odoo-rollback serve`` for it, a verified pre-deploy
snapshot and a drill taken by the helper's CLI, the records of scripts/screenshot_data.py, then ``odoo-bin``
on a free loopback port and Chromium driven through the DevTools protocol. Whatever happens, the servers
are stopped, the database dropped and the temporary files removed.

    make screenshots            # .venv/bin/python scripts/screenshots.py
    python scripts/screenshots.py --output DIR --keep-going
"""

from __future__ import annotations

import argparse
import base64
import configparser
import io
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import requests
import websocket
from PIL import Image
from psycopg2 import sql

REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("VENV", REPO / ".venv"))
OUTPUT = REPO / "static" / "description" / "screenshots"
WIDTH, HEIGHT = 1280, 800
MAX_BYTES = 200_000
COUNTED_TABLES = ["account_move", "account_move_line", "res_partner", "mail_message"]
# What the database holds besides the module: a real company's invoicing, with demo invoices and partners.
MODULES = "account,l10n_cr,deployment_rollback"


class ShotError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"screenshots: {message}", flush=True)


def load_env(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of .venv/test.env (what `make setup` wrote), over this process's environment."""
    if not path.exists():
        raise ShotError(f"no {path}: run 'make setup' first")
    env = dict(os.environ)
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            env.setdefault(key, value.strip().strip("'\""))
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float, what: str, process: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise ShotError(f"{what}: the process ended with status {process.returncode}")
        if time.monotonic() > deadline:
            raise ShotError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


class Run:
    """Everything this run starts, so that close() can undo it in reverse order."""

    def __init__(self, env: dict[str, str], keep: bool) -> None:
        self.env = env
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="rbshots-"))
        self.db = f"rbshots_{int(time.time())}_{os.getpid()}"
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.db_created = False
        self.python = sys.executable
        self.odoo_bin = str(Path(env["ODOO_SRC"]) / "odoo-bin")
        # Read here only: odoo-bin loads ODOO_RC before -c, and its addons path (another copy of the addon
        # maybe) would come first.
        self.base_rc = self.env.pop("ODOO_RC")
        # The helper of this checkout, also for the jobs its API spawns (they inherit PYTHONPATH).
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "helper" / "src"), env.get("PYTHONPATH")]))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"

    # -- Odoo ---------------------------------------------------------------------------------------
    def write_odoo_config(self) -> None:
        """A copy of the venv's odoo.conf serving this checkout, with its own data dir and helper secret."""
        base = configparser.ConfigParser(interpolation=None)
        base.read(self.base_rc)
        options = dict(base["options"])
        # This checkout as the addon, whatever its folder is called and whichever copy the venv points at.
        addons = self.tmp / "addons"
        addons.mkdir()
        (addons / "deployment_rollback").symlink_to(REPO)
        paths = [
            p for p in options.get("addons_path", "").split(",") if p and not Path(p, "deployment_rollback").exists()
        ]
        self.secret_file = self.tmp / "api-secret"
        self.secret_file.write_text(os.urandom(24).hex())
        self.secret_file.chmod(0o600)
        options.update(
            {
                "addons_path": ",".join([*paths, str(addons)]),
                "data_dir": str(self.tmp / "odoo-data"),
                "deployment_rollback_secret_file": str(self.secret_file),
                "db_name": self.db,
                "dbfilter": f"^{self.db}$",
                "list_db": "False",
                "http_interface": "127.0.0.1",
                "http_port": str(self.port),
                "workers": "0",
                "max_cron_threads": "0",
                "without_demo": "",
                "log_level": "warn",
                "logfile": str(self.tmp / "odoo.log"),
            }
        )
        config = configparser.ConfigParser(interpolation=None)
        config["options"] = options
        self.odoo_rc = self.tmp / "odoo.conf"
        with self.odoo_rc.open("w") as handle:
            config.write(handle)

    def odoo(self, *args: str, stdin: str | None = None) -> str:
        command = [self.python, self.odoo_bin, *args[:1], "-c", str(self.odoo_rc), "-d", self.db, *args[1:]]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, env=self.env, check=False)
        if result.returncode:
            tail = (self.tmp / "odoo.log").read_text()[-4000:] if (self.tmp / "odoo.log").exists() else ""
            raise ShotError(f"odoo-bin {args[0]} failed ({result.returncode}):\n{result.stderr[-4000:]}\n{tail}")
        return result.stdout

    def install(self) -> None:
        log(f"installing {MODULES} with demo data on a fresh database {self.db}")
        self.db_created = True
        self.odoo("server", "-i", MODULES, "--stop-after-init")

    def start_odoo(self) -> None:
        log(f"starting Odoo on {self.base_url}")
        log_file = (self.tmp / "odoo-server.out").open("w")
        process = subprocess.Popen(
            [self.python, self.odoo_bin, "server", "-c", str(self.odoo_rc), "-d", self.db],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        self.processes.append(("odoo", process))

        def answers() -> bool:
            try:
                return requests.get(f"{self.base_url}/web/login", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, 120, "Odoo's login page", process)

    def session_id(self) -> str:
        reply = requests.post(
            f"{self.base_url}/web/session/authenticate",
            json={"jsonrpc": "2.0", "method": "call", "params": {"db": self.db, "login": "admin", "password": "admin"}},
            timeout=60,
        )
        reply.raise_for_status()
        if reply.json().get("error") or "session_id" not in reply.cookies:
            raise ShotError(f"could not log in as admin: {reply.text[:500]}")
        return reply.cookies["session_id"]

    # -- the helper ---------------------------------------------------------------------------------
    def write_helper_config(self) -> None:
        self.socket = self.tmp / "api.sock"
        env = self.env
        lines = [
            "[database]",
            f"name = {json.dumps(self.db)}",
            f"host = {json.dumps(env.get('ROLLBACK_TEST_PGHOST', '127.0.0.1'))}",
            f"port = {int(env.get('ROLLBACK_TEST_PGPORT', '5432'))}",
            f"user = {json.dumps(env.get('ROLLBACK_TEST_PGUSER', 'rollback_helper'))}",
            f"password = {json.dumps(env.get('ROLLBACK_TEST_PGPASSWORD', 'rollback_helper'))}",
            "[filestore]",
            f"path = {json.dumps(str(self.tmp / 'odoo-data' / 'filestore' / self.db))}",
            "[storage]",
            f"path = {json.dumps(str(self.tmp / 'storage'))}",
            "[counts]",
            f"tables = {json.dumps(COUNTED_TABLES)}",
            "[code]",
            f"path = {json.dumps(str(REPO))}",
            "[health]",
            f"url = {json.dumps(self.base_url + '/web/login')}",
            "attempts = 1",
            "[api]",
            f"socket = {json.dumps(str(self.socket))}",
            f"secret_file = {json.dumps(str(self.secret_file))}",
        ]
        (self.tmp / "odoo-data" / "filestore" / self.db).mkdir(parents=True, exist_ok=True)
        self.helper_config = self.tmp / "helper.toml"
        self.helper_config.write_text("\n".join(lines) + "\n")
        self.helper_config.chmod(0o600)  # it holds the database password

    def helper(self, *args: str) -> dict[str, Any]:
        command = [self.python, "-m", "odoo_rollback.cli", "--config", str(self.helper_config), *args, "--json"]
        result = subprocess.run(command, capture_output=True, text=True, env=self.env, check=False)
        if result.returncode:
            raise ShotError(f"odoo-rollback {args[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return json.loads(result.stdout)

    def start_helper(self) -> None:
        log("starting odoo-rollback serve")
        log_file = (self.tmp / "helper-serve.out").open("w")
        command = [self.python, "-m", "odoo_rollback.cli", "--config", str(self.helper_config), "serve"]
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=self.env)
        self.processes.append(("odoo-rollback serve", process))
        wait_until(self.socket.exists, 30, "odoo-rollback serve's socket", process)

    def make_data(self) -> dict[str, int]:
        log("taking a verified pre-deploy snapshot and running a drill with the helper's CLI")
        snapshot = self.helper(
            "snapshot", "--kind", "pre_deploy", "--label", "Before the 16.0.3 deployment", "--verify"
        )
        if not snapshot.get("verify", {}).get("ok"):
            raise ShotError(f"the snapshot did not verify: {snapshot.get('verify')}")
        drill = self.helper("drill", snapshot["id"])
        if not drill.get("ok"):
            raise ShotError(f"the drill failed: {drill.get('problems')}")
        log("importing the journal and making the records (odoo-bin shell)")
        self.env["SHOTS_DATA"] = json.dumps({"address": f"unix:{self.socket}", "snapshot": snapshot["id"]})
        script = (REPO / "scripts" / "screenshot_data.py").read_text()
        out = self.odoo("shell", "--no-http", stdin=script)
        for line in out.splitlines():
            if line.startswith("SHOTS_IDS "):
                return json.loads(line.split(" ", 1)[1])
        raise ShotError(f"the data script did not finish:\n{out[-4000:]}")

    # -- cleaning up --------------------------------------------------------------------------------
    def close(self) -> None:
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    log(f"{name} did not stop on SIGTERM: killing it")
                    process.kill()
                    process.wait()
        if self.db_created and not self.keep:
            self.drop_database()
        if self.keep:
            log(f"kept {self.tmp} and the database {self.db}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def drop_database(self) -> None:
        env = self.env
        try:
            conn = psycopg2.connect(
                dbname="postgres",
                host=env.get("ROLLBACK_TEST_PGHOST", "127.0.0.1"),
                port=int(env.get("ROLLBACK_TEST_PGPORT", "5432")),
                user=env.get("ROLLBACK_TEST_PGUSER", "rollback_helper"),
                password=env.get("ROLLBACK_TEST_PGPASSWORD", "rollback_helper"),
            )
        except psycopg2.Error as exc:
            log(f"could not connect to drop {self.db}: {exc}")
            return
        conn.autocommit = True  # DROP DATABASE runs outside a transaction: no "with conn" here
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.db)))
            log(f"dropped the database {self.db}")
        except psycopg2.Error as exc:
            log(f"could not drop {self.db}: {exc}")
        finally:
            conn.close()


class Chromium:
    """Headless Chromium through the DevTools protocol: navigate, evaluate, capture."""

    def __init__(self, profile: Path, width: int, height: int) -> None:
        self.profile = profile
        binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if not binary:
            raise ShotError("no chromium on PATH")
        self.process = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--lang=en-US",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = profile / "DevToolsActivePort"
            wait_until(
                lambda: port_file.exists() and port_file.read_text().strip(),
                30,
                "Chromium's DevTools port",
                self.process,
            )
            port = int(port_file.read_text().split()[0])
            pages = wait_until(
                lambda: [
                    t
                    for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                    if t["type"] == "page"
                ],
                30,
                "Chromium's first page",
            )
            self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=120, suppress_origin=True)
            self.ids = itertools.count(1)
            self.send("Page.enable")
            self.send("Network.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            # The admin's time zone (screenshot_data.py): the web client shows times in the browser's.
            self.send("Emulation.setTimezoneOverride", timezoneId="Europe/Brussels")
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise ShotError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise ShotError(f"{expression[:80]}...: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 60) -> None:
        wait_until(lambda: self.evaluate(expression), timeout, what)

    def navigate(self, url: str) -> None:
        # A page of its own each time: Odoo then loads the action from the URL, not from a hash change.
        self.send("Page.navigate", url="about:blank")
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", f"loading {url}")

    def png(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


# Odoo has drawn the action and has nothing loading; the screen's own selector says its data is there.
IDLE = """(() => {
    const manager = document.querySelector('.o_action_manager');
    return !!manager && manager.children.length > 0
        && !document.querySelector('.o_loading_indicator, .o_loading, .o_blockUI');
})()"""


# The record's tabs at the top of the screen, with what the form shows above them scrolled away.
SHOW_NOTEBOOK = "document.querySelector('.o_form_view .o_notebook').scrollIntoView({block: 'start'}); true"


def click(selector: str, text: str = "", row_text: str = "") -> str:
    """JS clicking the first element of *selector* whose text (or its table row's) contains *text* (*row_text*);
    false when there is none yet."""
    return f"""(() => {{
        const found = [...document.querySelectorAll({json.dumps(selector)})].find((el) =>
            el.textContent.includes({json.dumps(text)})
            && (el.closest('tr') || el).textContent.includes({json.dumps(row_text)}));
        if (found) {{ found.click(); }}
        return !!found;
    }})()"""


def exists(selector: str, text: str = "") -> str:
    return f"""[...document.querySelectorAll({json.dumps(selector)})]
        .some((el) => el.textContent.includes({json.dumps(text)}))"""


def screens(ids: dict[str, int]) -> list[dict[str, Any]]:
    """Each screen: its URL, then (action, condition to wait for) pairs, the last being what must show."""
    return [
        {
            "name": "overview",
            "url": f"/web#action=deployment_rollback.deployment_overview_action_open&menu_id={ids['menu']}",
            "steps": [
                ("true", exists(".o_form_view .o_field_widget[name='quarter_state']", "Done")),
                ("true", exists(".o_form_view .o_field_widget[name='helper_status']", "Reachable")),
            ],
        },
        {
            "name": "settings",
            "url": "/web#action=base_setup.action_general_configuration",
            "steps": [
                ("true", exists("#deployment_rollback")),
                ("document.querySelector('#deployment_rollback').scrollIntoView({block: 'start'}); true", "true"),
            ],
        },
        {
            "name": "snapshot_capture",
            "url": "/web#action=base_setup.action_general_configuration",
            "steps": [
                (
                    click("#deployment_rollback button[name='action_deployment_capture_snapshot']"),
                    exists(".modal .o_field_widget[name='label'] input"),
                ),
                (
                    """(() => {
                        const name = document.querySelector('.modal .o_field_widget[name="label"] input');
                        name.value = 'before v2.3';
                        name.dispatchEvent(new Event('input', {bubbles: true}));
                        name.dispatchEvent(new Event('change', {bubbles: true}));
                        return true;
                    })()""",
                    "true",
                ),
            ],
        },
        {
            "name": "snapshot",
            "url": f"/web#model=deployment.snapshot&id={ids['snapshot']}&view_type=form&menu_id={ids['menu']}",
            "steps": [("true", exists(".o_form_view .o_field_widget[name='count_ids'] td", "Journal Entry"))],
        },
        {
            "name": "rollback_checklist",
            "url": f"/web#action=deployment_rollback.deployment_snapshot_action&menu_id={ids['menu']}",
            "steps": [
                (
                    click("[data-menu-xmlid='deployment_rollback.deployment_rollback_menu']"),
                    exists("[data-menu-xmlid='deployment_rollback.deployment_rollback_wizard_menu']"),
                ),
                (
                    click("[data-menu-xmlid='deployment_rollback.deployment_rollback_wizard_menu']"),
                    exists(".modal td[name='name']", "Migration errors affecting data"),
                ),
                (
                    click(".modal tr.o_data_row td[name='holds']", row_text="Migration errors affecting data"),
                    exists(".modal tr.o_selected_row td[name='holds'] input"),
                ),
                (
                    click(".modal tr.o_selected_row td[name='holds'] input"),
                    exists(".modal .alert-danger", "An immediate trigger holds"),
                ),
                (
                    """(() => {
                        const reason = document.querySelector('.modal .o_field_widget[name="reason"] textarea');
                        reason.value = 'Invoices lost their lines after the migration';
                        reason.dispatchEvent(new Event('input', {bubbles: true}));
                        reason.dispatchEvent(new Event('change', {bubbles: true}));
                        return true;
                    })()""",
                    "true",
                ),
            ],
        },
        {
            "name": "rollback_procedure",
            "url": f"/web#model=deployment.rollback&id={ids['rollback']}&view_type=form&menu_id={ids['menu']}",
            "steps": [
                (
                    click(".o_notebook .nav-link", "Procedure"),
                    exists(".o_field_widget[name='step_ids'] td", "Check the restored database"),
                ),
                (SHOW_NOTEBOOK, "true"),
            ],
        },
        {
            "name": "rollback_validation",
            "url": f"/web#model=deployment.rollback&id={ids['rollback']}&view_type=form&menu_id={ids['menu']}",
            "steps": [
                (
                    click(".o_notebook .nav-link", "Validation"),
                    exists(".o_field_widget[name='integrity_ids'] td", "Journal Entry"),
                ),
                (SHOW_NOTEBOOK, "true"),
            ],
        },
        {
            "name": "postmortem",
            "url": f"/web#model=deployment.postmortem&id={ids['postmortem']}&view_type=form&menu_id={ids['menu']}",
            "steps": [
                (
                    click(".o_notebook .nav-link", "Action Items"),
                    exists(".o_field_widget[name='action_ids'] td", "Test migrations on a copy of production"),
                ),
            ],
        },
        {
            "name": "drills_by_quarter",
            "url": f"/web#action=deployment_rollback.deployment_drill_overview_action_open&menu_id={ids['menu']}",
            "steps": [
                ("true", exists(".o_control_panel .breadcrumb", "Drills by Quarter")),
                ("true", exists(".o_field_widget[name='line_ids'] td[name='state']", "Done")),
            ],
        },
    ]


def shrink(png: bytes) -> bytes:
    """Screens are flat colours: 256 of them keep a screenshot readable and well under MAX_BYTES."""
    if len(png) <= MAX_BYTES:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def capture(run: Run, output: Path, only: set[str]) -> list[Path]:
    browser = Chromium(run.tmp / "chromium", WIDTH, HEIGHT)
    try:
        browser.send("Network.setCookie", name="session_id", value=run.session_id(), url=run.base_url, httpOnly=True)
        written = []
        for screen in screens(run.ids):
            if only and screen["name"] not in only:
                continue
            log(f"capturing {screen['name']}")
            try:
                browser.navigate(run.base_url + screen["url"])
                browser.wait_for(IDLE, f"{screen['name']}: Odoo's first screen")
                for number, (action, condition) in enumerate(screen["steps"], 1):
                    browser.wait_for(action, f"{screen['name']}, step {number}: the action")
                    browser.wait_for(condition, f"{screen['name']}, step {number}: what it should show")
                    browser.wait_for(IDLE, f"{screen['name']}, step {number}: Odoo finishing")
            except ShotError as exc:
                failed = run.tmp / f"failed-{screen['name']}.png"
                failed.write_bytes(browser.png())
                raise ShotError(f"{exc} (the screen as it was: {failed}, with --keep)") from exc
            if browser.evaluate("!!document.querySelector('.o_login_auth, form.oe_login_form')"):
                raise ShotError(f"{screen['name']}: the login page is shown")
            time.sleep(0.6)  # transitions (tabs, dialogs) end before the capture
            path = output / f"{screen['name']}.png"
            path.write_bytes(shrink(browser.png()))
            written.append(path)
        return written
    finally:
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where the PNGs go (default {OUTPUT})")
    parser.add_argument("--only", action="append", default=[], help="a screen's name; repeat for more")
    parser.add_argument("--keep", action="store_true", help="keep the database and files (to look into a failure)")
    args = parser.parse_args(argv)
    run = Run(load_env(VENV / "test.env"), keep=args.keep)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        run.write_odoo_config()
        run.install()
        run.write_helper_config()
        run.start_helper()
        run.start_odoo()
        run.ids = run.make_data()
        for path in capture(run, args.output, set(args.only)):
            log(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    except (ShotError, OSError, requests.RequestException, websocket.WebSocketException) as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        run.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
