"""The helper's configuration: one TOML file, read once into frozen dataclasses.

The file is named by ``--config FILE`` or ``$ODOO_ROLLBACK_CONFIG``. Every problem is reported as a
:class:`~odoo_rollback.errors.ConfigError` naming the key, before anything is done.
"""

from __future__ import annotations

import difflib
import os
import re
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_VAR = "ODOO_ROLLBACK_CONFIG"

# Odoo's own rule for database names (odoo.service.db.DBNAME_PATTERN), kept short enough that the
# staging and kept-aside names (``<db>__restore_<time>``) still fit PostgreSQL's 63 bytes.
DBNAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,38}$")
TABLE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SERVICE_BACKENDS = ("none", "docker", "systemd", "command")
MIN_API_SECRET = 32  # characters; `openssl rand -hex 32` gives 64
INLINE_SECRETS = (("database", "password"), ("smtp", "password"))


def read_private_file(path: Path, key: str) -> str:
    """The stripped text of a secret file that others cannot read; a ConfigError naming *key* otherwise.

    Group read is allowed (Odoo's group reads the API secret); "others" never: like ssh and libpq's
    ``.pgpass``, a secret that every local account can read is refused rather than used.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{key}: {path} is not UTF-8 text") from exc
    if mode & 0o004:
        raise ConfigError(f"{key}: {path} is readable by everyone: chmod o-r it")
    # Whoever may write a secret may choose it: the helper would then obey whoever knows the new one.
    if mode & 0o022:
        raise ConfigError(f"{key}: {path} may be written by others than its owner: chmod go-w it")
    return text


def read_api_secret(path: Path) -> bytes:
    """The API's shared secret: a private file (:func:`read_private_file`), long enough not to be guessed
    online (a refused request costs the guesser nothing but one connection)."""
    secret = read_private_file(path, "api.secret_file")
    if len(secret) < MIN_API_SECRET:
        raise ConfigError(
            f"api.secret_file {path} holds {len(secret)} characters; at least {MIN_API_SECRET} are needed "
            "(make one with: openssl rand -hex 32)"
        )
    return secret.encode()


def check_inline_secrets(file: Path, data: Mapping[str, Any]) -> None:
    """Refuse a configuration file that everyone can read when it holds a password itself (as libpq
    refuses such a ``.pgpass``): the database password is the helper's rights."""
    inline = [
        f"{section}.{key}"
        for section, key in INLINE_SECRETS
        if isinstance(data.get(section), Mapping) and key in data[section]
    ]
    if inline and file.stat().st_mode & 0o004:
        raise ConfigError(
            f"configuration file {file} holds {', '.join(inline)} and is readable by everyone: chmod o-r it, "
            f"or move the password into {inline[0]}_file"
        )


def check_database_name(name: str, what: str = "database name") -> str:
    """Return *name* if it is a plain database name, else raise ConfigError."""
    if not isinstance(name, str) or not DBNAME_PATTERN.match(name):
        raise ConfigError(
            f"{what} {name!r} is not a plain identifier "
            "(letters, digits, '_', '.', '-', at most 39 characters, not starting with '_' '.' '-')"
        )
    return name


@dataclass(frozen=True)
class DatabaseConfig:
    name: str
    host: str | None = None
    port: int = 5432
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    # Where CREATE/ALTER/DROP DATABASE are issued from: never the database being changed.
    maintenance_db: str = "postgres"

    def connect_params(self, dbname: str | None = None) -> dict[str, Any]:
        """Keyword arguments for psycopg2.connect."""
        params: dict[str, Any] = {"dbname": dbname or self.name, "port": self.port}
        if self.host:
            params["host"] = self.host
        if self.user:
            params["user"] = self.user
        if self.password is not None:
            params["password"] = self.password
        params["application_name"] = "odoo-rollback"
        params["connect_timeout"] = 10
        return params

    def libpq_env(self) -> dict[str, str]:
        """Environment for pg_dump/pg_restore: credentials never appear in an argument list."""
        env = dict(os.environ)
        env["PGPORT"] = str(self.port)
        if self.host:
            env["PGHOST"] = self.host
        if self.user:
            env["PGUSER"] = self.user
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        env["PGAPPNAME"] = "odoo-rollback"
        env["PGCONNECT_TIMEOUT"] = "10"
        return env


@dataclass(frozen=True)
class FilestoreConfig:
    path: Path


@dataclass(frozen=True)
class StorageConfig:
    path: Path
    # The database whose snapshots this storage holds ([database] name): a snapshot folder holding another
    # database's snapshot is refused when it is opened (storage.open_snapshot).
    database: str
    # pg_dump/pg_restore parallel jobs (directory format); 0 means "number of CPUs".
    jobs: int = 0
    # Free space demanded beyond the expected size, as a fraction of it.
    free_space_margin: float = 0.2

    @property
    def snapshots_dir(self) -> Path:
        return self.path / "snapshots"

    @property
    def journal_path(self) -> Path:
        return self.path / "journal.sqlite3"

    @property
    def effective_jobs(self) -> int:
        return self.jobs or max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class CountsConfig:
    tables: tuple[str, ...] = ("account_move", "res_partner")


@dataclass(frozen=True)
class CodeConfig:
    # A git work tree holding the deployed addons; None when the code is not managed here.
    path: Path | None = None


@dataclass(frozen=True)
class DockerServicesConfig:
    project: str | None = None  # com.docker.compose.project label
    services: tuple[str, ...] = ("odoo", "nginx")  # com.docker.compose.service labels, in stop order
    base_url: str | None = None  # Docker daemon address; None: the environment's (DOCKER_HOST)


@dataclass(frozen=True)
class ServicesConfig:
    backend: str = "none"
    stop_timeout: int = 60  # seconds a service is given to stop
    start_timeout: int = 120  # seconds a service is given to be running again
    docker: DockerServicesConfig = DockerServicesConfig()
    units: tuple[str, ...] = ()  # systemd units, in stop order
    stop_command: tuple[str, ...] = ()  # command backend: argument lists, never a shell line
    start_command: tuple[str, ...] = ()
    status_command: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthConfig:
    url: str | None = None  # e.g. http://127.0.0.1:8069/web/login
    timeout: float = 5.0
    attempts: int = 30
    interval: float = 2.0
    max_response_seconds: float = 10.0


@dataclass(frozen=True)
class SmokeConfig:
    # Odoo's base URL (scheme://host:port); None when neither [smoke] url nor [health] url is given.
    url: str | None = None
    login: str | None = None
    # A file holding the password or API key of *login*; read when the smoke runs, never logged.
    credentials_file: Path | None = None
    # Operator's SQL, one statement each, that must return at least one row (run read-only).
    sql_checks: tuple[str, ...] = ()
    # URLs (absolute, or paths under *url*) that must answer 2xx/3xx.
    url_checks: tuple[str, ...] = ()
    timeout: float = 10.0


@dataclass(frozen=True)
class RtoConfig:
    target_minutes: float = 15.0
    max_minutes: float = 30.0


@dataclass(frozen=True)
class ApiConfig:
    socket: Path | None = None  # Unix socket (default)
    host: str | None = None  # loopback TCP, for docker set-ups
    port: int | None = None
    secret_file: Path | None = None
    max_clock_skew: int = 300  # seconds a signed request stays valid
    # Seconds a client has to send a whole request (headers and body) from the moment it connects:
    # slow or half-sent requests are closed, so they cannot hold the server's connections.
    read_timeout: float = 10.0
    # Connections served at once; beyond that the oldest one still sending its request is closed.
    max_connections: int = 32


@dataclass(frozen=True)
class SmtpConfig:
    host: str | None = None
    port: int = 25
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    update_minutes: float = 15.0


UPDATE_PLACEHOLDERS = ("database", "modules")


@dataclass(frozen=True)
class DeployConfig:
    # odoo-bin's module update as an argument list (no shell); "{database}" and "{modules}" (the module
    # names joined by commas) are replaced in each argument. Empty: "deploy" refuses to run.
    update_command: tuple[str, ...] = ()
    update_timeout: int = 3600  # seconds the update command may take
    analysis_seconds: float = 300.0  # how long the deployment is watched after the start
    analysis_interval: float = 30.0  # seconds between two rounds of checks
    # A verified pre_deploy snapshot of the same code revision, at most this old, is used instead of a
    # new one; 0 takes a new snapshot for every deployment.
    reuse_snapshot_minutes: float = 0.0
    # Odoo's service log: a file, or else the docker service / systemd unit named here (default: the
    # first of [services.docker] services or [services] units).
    log_file: Path | None = None
    log_service: str | None = None


CAPTURE_MODES = ("auto", "fallback")


@dataclass(frozen=True)
class CaptureConfig:
    # auto: exact capture through a logical replication slot when the server allows it (wal_level =
    # logical, a free slot, the REPLICATION privilege), else the fallback; fallback: never a slot.
    mode: str = "auto"
    # A slot keeps every WAL segment written after it: past this many MiB it is dropped (with a
    # warning, by ``health``) so that a forgotten slot never fills the server's disk.
    max_retained_wal_mb: int = 4096
    # Creating a slot waits for the transactions running at that moment, in every database of the
    # server, to end; past this the snapshot is taken without one (fallback, which sees long
    # transactions too) rather than wait for a long import.
    slot_wait_seconds: float = 10.0


@dataclass(frozen=True)
class StandbyConfig:
    """A warm standby: a snapshot restored ahead of need, so that a rollback to it is a swap."""

    enabled: bool = True  # deploy builds one after its pre_deploy snapshot; False: never
    after_snapshot: bool = False  # also after every verified snapshot taken by "snapshot" (CLI, Odoo)
    jobs: int = 1  # pg_restore jobs: few, so that the running Odoo keeps the CPUs
    # PostgreSQL's data directory as this host sees it, for its free space (default: the server's
    # data_directory setting, when that path exists here).
    data_directory: Path | None = None


@dataclass(frozen=True)
class RetentionRule:
    """Keep the *keep_last* newest (per kind, for snapshots) and nothing older than *max_days*; 0: no limit."""

    keep_last: int = 0
    max_days: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.keep_last or self.max_days)

    def as_dict(self) -> dict[str, Any]:
        return {"keep_last": self.keep_last, "max_days": self.max_days}


@dataclass(frozen=True)
class RetentionConfig:
    snapshots: RetentionRule = RetentionRule()
    # The databases and filestores a restore keeps aside, and scratch leftovers of drills.
    kept: RetentionRule = RetentionRule(keep_last=2, max_days=7.0)


@dataclass(frozen=True)
class RemoteConfig:
    """An off-host copy target, written with rclone."""

    name: str
    target: str  # rclone "remote:path"
    rclone_config: Path  # rclone.conf holding the remote's credentials; refused when others can read it
    kinds: tuple[str, ...] = ()  # snapshot kinds copied; empty: every kind
    retention: RetentionRule = RetentionRule()

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds


@dataclass(frozen=True)
class NeutralizeConfig:
    # Odoo's addons folders (odoo.conf's addons_path, Odoo's own odoo/addons included), where each
    # module's data/neutralize.sql is found; empty: copies cannot be neutralized, drills are not.
    addons_path: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig
    filestore: FilestoreConfig
    storage: StorageConfig
    counts: CountsConfig = CountsConfig()
    code: CodeConfig = CodeConfig()
    services: ServicesConfig = ServicesConfig()
    health: HealthConfig = HealthConfig()
    smoke: SmokeConfig = SmokeConfig()
    rto: RtoConfig = RtoConfig()
    api: ApiConfig = ApiConfig()
    smtp: SmtpConfig = SmtpConfig()
    deploy: DeployConfig = DeployConfig()
    retention: RetentionConfig = RetentionConfig()
    remotes: tuple[RemoteConfig, ...] = ()
    neutralize: NeutralizeConfig = NeutralizeConfig()
    capture: CaptureConfig = CaptureConfig()
    standby: StandbyConfig = StandbyConfig()
    source: Path | None = None


class _Section:
    """Typed access to one TOML table, with errors that name the key."""

    def __init__(self, data: Mapping[str, Any], name: str, base: Path) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"[{name}] must be a table")
        self.data = data
        self.name = name
        self.base = base
        # The keys this program reads: any other key in the file is a typo or an obsolete setting.
        self.known: set[str] = set()
        self.children: list[_Section] = []

    def _key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def section(self, key: str) -> _Section:
        """A sub-table, such as [services.docker]."""
        self.known.add(key)
        child = _Section(self.data.get(key, {}), self._key(key), self.base)
        self.children.append(child)
        return child

    def check_unknown(self) -> None:
        """Refuse the keys that nothing read, naming the first one (and what was probably meant)."""
        for child in self.children:
            child.check_unknown()
        unknown = sorted(set(self.data) - self.known)
        if not unknown:
            return
        close = difflib.get_close_matches(unknown[0], sorted(self.known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(sorted(self.known))})"
        raise ConfigError(f"unknown key {self._key(unknown[0])} in the configuration{hint}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.known.add(key)
        value = self.data.get(key, default)
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"{self._key(key)} has the wrong type: {value!r}")
        return value

    def require(self, key: str, kind: type) -> Any:
        value = self.get(key, kind)
        if value is None:
            raise ConfigError(f"{self._key(key)} is required")
        return value

    def path(self, key: str, required: bool = False) -> Path | None:
        value = self.require(key, str) if required else self.get(key, str)
        if value is None:
            return None
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (self.base / path)

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        self.known.add(key)
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self._key(key)} must be a list of strings")
        return tuple(value)

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value <= 0:
            raise ConfigError(f"{self._key(key)} must be greater than 0")
        return value

    def secret(self, key: str) -> str | None:
        """A secret given inline as ``key`` or read from the file named by ``key_file``."""
        inline = self.get(key, str)
        file_path = self.path(f"{key}_file")
        if inline is not None and file_path is not None:
            raise ConfigError(f"give {self._key(key)} or {self._key(key + '_file')}, not both")
        if file_path is None:
            return None if inline is None else str(inline)
        return read_private_file(file_path, self._key(key + "_file"))


def parse_config(data: Mapping[str, Any], base: Path, source: Path | None = None) -> Config:
    """Build a Config from parsed TOML; relative paths are taken from *base*."""
    known = {
        "database",
        "filestore",
        "storage",
        "counts",
        "code",
        "services",
        "health",
        "smoke",
        "rto",
        "api",
        "smtp",
        "deploy",
        "retention",
        "remotes",
        "neutralize",
        "capture",
        "standby",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown section(s) in the configuration: {', '.join(unknown)}")

    sections: list[_Section] = []

    def section_named(name: str) -> _Section:
        section = _Section(data.get(name, {}), name, base)
        sections.append(section)
        return section

    db = section_named("database")
    database = DatabaseConfig(
        name=check_database_name(db.require("name", str), "database.name"),
        host=db.get("host", str),
        port=db.positive("port", int, 5432),
        user=db.get("user", str),
        password=db.secret("password"),
        maintenance_db=db.get("maintenance_db", str, "postgres"),
    )
    filestore = FilestoreConfig(path=section_named("filestore").path("path", required=True))  # type: ignore[arg-type]
    st = section_named("storage")
    storage = StorageConfig(
        path=st.path("path", required=True),  # type: ignore[arg-type]
        database=database.name,
        jobs=st.get("jobs", int, 0),
        free_space_margin=st.get("free_space_margin", float, 0.2),
    )
    if storage.jobs < 0:
        raise ConfigError("storage.jobs must be 0 (all CPUs) or more")
    tables = section_named("counts").strings("tables", CountsConfig().tables)
    for table in tables:
        if not TABLE_PATTERN.match(table):
            raise ConfigError(f"counts.tables: {table!r} is not a table name")

    sv = section_named("services")
    backend = sv.get("backend", str, "none")
    if backend not in SERVICE_BACKENDS:
        raise ConfigError(f"services.backend must be one of {', '.join(SERVICE_BACKENDS)}, not {backend!r}")
    dk = sv.section("docker")
    services = ServicesConfig(
        backend=backend,
        stop_timeout=sv.positive("stop_timeout", int, 60),
        start_timeout=sv.positive("start_timeout", int, 120),
        docker=DockerServicesConfig(
            project=dk.get("project", str),
            services=dk.strings("services", DockerServicesConfig().services),
            base_url=dk.get("base_url", str),
        ),
        units=sv.strings("units"),
        stop_command=sv.strings("stop_command"),
        start_command=sv.strings("start_command"),
        status_command=sv.strings("status_command"),
    )
    if backend == "docker" and not services.docker.project:
        raise ConfigError('services.docker.project is required with backend = "docker"')
    if backend == "systemd" and not services.units:
        raise ConfigError('services.units is required with backend = "systemd"')
    if backend == "command" and not (services.stop_command and services.start_command):
        raise ConfigError('services.stop_command and services.start_command are required with backend = "command"')

    hl = section_named("health")
    health = HealthConfig(
        url=hl.get("url", str),
        timeout=hl.positive("timeout", float, 5.0),
        attempts=hl.positive("attempts", int, 30),
        interval=hl.get("interval", float, 2.0),
        max_response_seconds=hl.positive("max_response_seconds", float, 10.0),
    )
    smoke = parse_smoke(section_named("smoke"), health)
    rt = section_named("rto")
    rto = RtoConfig(
        target_minutes=rt.positive("target_minutes", float, 15.0),
        max_minutes=rt.positive("max_minutes", float, 30.0),
    )
    if rto.max_minutes < rto.target_minutes:
        raise ConfigError("rto.max_minutes must not be less than rto.target_minutes")

    ap = section_named("api")
    api = ApiConfig(
        socket=ap.path("socket"),
        host=ap.get("host", str),
        port=ap.get("port", int),
        secret_file=ap.path("secret_file"),
        max_clock_skew=ap.positive("max_clock_skew", int, 300),
        read_timeout=ap.positive("read_timeout", float, 10.0),
        max_connections=ap.positive("max_connections", int, 32),
    )
    sm = section_named("smtp")
    smtp = SmtpConfig(
        host=sm.get("host", str),
        port=sm.positive("port", int, 25),
        user=sm.get("user", str),
        password=sm.secret("password"),
        starttls=sm.get("starttls", bool, False),
        sender=sm.get("sender", str),
        recipients=sm.strings("recipients"),
        update_minutes=sm.positive("update_minutes", float, 15.0),
    )
    code = CodeConfig(path=section_named("code").path("path"))
    deploy = parse_deploy(section_named("deploy"))
    retention = parse_retention(section_named("retention"))
    remotes = parse_remotes(section_named("remotes"))
    neutralize = parse_neutralize(section_named("neutralize"))
    capture = parse_capture(section_named("capture"))
    standby = parse_standby(section_named("standby"))
    # Last, once every key was read: a typo must never be silently ignored.
    for section in sections:
        section.check_unknown()
    return Config(
        database=database,
        filestore=filestore,
        storage=storage,
        counts=CountsConfig(tables=tables),
        code=code,
        services=services,
        health=health,
        smoke=smoke,
        rto=rto,
        api=api,
        smtp=smtp,
        deploy=deploy,
        retention=retention,
        remotes=remotes,
        neutralize=neutralize,
        capture=capture,
        standby=standby,
        source=source,
    )


def base_url(url: str) -> str | None:
    """scheme://host[:port] of an http(s) URL, or None when it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def parse_smoke(sk: _Section, health: HealthConfig) -> SmokeConfig:
    url = sk.get("url", str)
    if url is not None:
        if base_url(url) is None:
            raise ConfigError(f"smoke.url must be an http:// or https:// URL, not {url!r}")
        url = url.rstrip("/")
    elif health.url:
        # The login page Odoo answers on tells where Odoo is: the smoke uses the same server.
        url = base_url(health.url)
    login = sk.get("login", str)
    credentials_file = sk.path("credentials_file")
    if (login is None) != (credentials_file is None):
        raise ConfigError("smoke.login and smoke.credentials_file go together: give both or neither")
    sql_checks = []
    for statement in sk.strings("sql_checks"):
        # One statement each: a second one after ";" would run outside the read-only transaction's
        # intent (a COMMIT followed by anything), so it is refused here rather than trusted.
        text = statement.strip().rstrip(";").strip()
        if not text:
            raise ConfigError("smoke.sql_checks: an entry is empty")
        if ";" in text:
            raise ConfigError(f"smoke.sql_checks: {statement!r} holds more than one statement")
        sql_checks.append(text)
    url_checks = sk.strings("url_checks")
    for check in url_checks:
        if base_url(check) is None and not check.startswith("/"):
            raise ConfigError(f"smoke.url_checks: {check!r} is neither an http(s) URL nor a path such as /web/health")
        if check.startswith("/") and url is None:
            raise ConfigError(f"smoke.url_checks: the path {check!r} needs smoke.url (or health.url)")
    return SmokeConfig(
        url=url,
        login=login,
        credentials_file=credentials_file,
        sql_checks=tuple(sql_checks),
        url_checks=url_checks,
        timeout=sk.positive("timeout", float, 10.0),
    )


def parse_deploy(section: _Section) -> DeployConfig:
    command = section.strings("update_command")
    used: set[str] = set()
    for argument in command:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(argument) if name is not None}
        except ValueError as exc:
            raise ConfigError(f"deploy.update_command: {argument!r} is not a valid template: {exc}") from exc
        unknown = sorted(fields - set(UPDATE_PLACEHOLDERS))
        if unknown:
            raise ConfigError(
                f"deploy.update_command: unknown placeholder {{{unknown[0]}}} in {argument!r} "
                "(only {database} and {modules})"
            )
        used |= fields
    if command and "modules" not in used:
        raise ConfigError('deploy.update_command must contain {modules}, e.g. [..., "-u", "{modules}", ...]')
    deploy = DeployConfig(
        update_command=command,
        update_timeout=section.positive("update_timeout", int, 3600),
        analysis_seconds=section.get("analysis_seconds", float, 300.0),
        analysis_interval=section.positive("analysis_interval", float, 30.0),
        reuse_snapshot_minutes=section.get("reuse_snapshot_minutes", float, 0.0),
        log_file=section.path("log_file"),
        log_service=section.get("log_service", str),
    )
    if deploy.analysis_seconds < 0:
        raise ConfigError("deploy.analysis_seconds must be 0 (no analysis) or more")
    if deploy.reuse_snapshot_minutes < 0:
        raise ConfigError("deploy.reuse_snapshot_minutes must be 0 (always a new snapshot) or more")
    return deploy


def parse_rule(section: _Section, default: RetentionRule) -> RetentionRule:
    rule = RetentionRule(
        keep_last=section.get("keep_last", int, default.keep_last),
        max_days=section.get("max_days", float, default.max_days),
    )
    if rule.keep_last < 0 or rule.max_days < 0:
        raise ConfigError(f"{section.name}: keep_last and max_days must be 0 (no limit) or more")
    return rule


def parse_retention(section: _Section) -> RetentionConfig:
    kept = section.section("kept")
    return RetentionConfig(
        snapshots=parse_rule(section, RetentionRule()), kept=parse_rule(kept, RetentionConfig().kept)
    )


def parse_neutralize(section: _Section) -> NeutralizeConfig:
    folders = []
    for entry in section.strings("addons_path"):
        folder = Path(os.path.expanduser(entry))
        folder = folder if folder.is_absolute() else section.base / folder
        if not folder.is_dir():
            raise ConfigError(f"neutralize.addons_path: {folder} is not a folder")
        folders.append(folder)
    return NeutralizeConfig(addons_path=tuple(folders))


REMOTE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def parse_remotes(section: _Section) -> tuple[RemoteConfig, ...]:
    remotes = []
    for name in section.data:
        if not REMOTE_NAME.match(name):
            raise ConfigError(f"remotes.{name}: a remote's name is lowercase letters, digits, '_' and '-'")
        sub = section.section(name)
        target = sub.require("target", str)
        if ":" not in target or target.startswith(("-", ":")):
            raise ConfigError(f"remotes.{name}.target must be an rclone 'remote:path', not {target!r}")
        remotes.append(
            RemoteConfig(
                name=name,
                target=target.rstrip("/"),
                rclone_config=sub.path("rclone_config", required=True),  # type: ignore[arg-type]
                kinds=sub.strings("kinds"),
                retention=parse_rule(sub, RetentionRule()),
            )
        )
    return tuple(remotes)


def parse_standby(section: _Section) -> StandbyConfig:
    return StandbyConfig(
        enabled=section.get("enabled", bool, True),
        after_snapshot=section.get("after_snapshot", bool, False),
        jobs=section.positive("jobs", int, 1),
        data_directory=section.path("data_directory"),
    )


def parse_capture(section: _Section) -> CaptureConfig:
    mode = section.get("mode", str, "auto")
    if mode not in CAPTURE_MODES:
        raise ConfigError(f"capture.mode must be one of {', '.join(CAPTURE_MODES)}, not {mode!r}")
    return CaptureConfig(
        mode=mode,
        max_retained_wal_mb=section.positive("max_retained_wal_mb", int, 4096),
        slot_wait_seconds=section.positive("slot_wait_seconds", float, 10.0),
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the configuration named by *path*, or by $ODOO_ROLLBACK_CONFIG."""
    name = path or os.environ.get(ENV_VAR)
    if not name:
        raise ConfigError(f"no configuration: give --config FILE or set ${ENV_VAR}")
    file = Path(name)
    try:
        text = file.read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {file} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {file}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {file} is not UTF-8 text (byte {exc.start + 1} is not)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {file} is not valid TOML: {exc}") from exc
    check_inline_secrets(file, data)
    return parse_config(data, file.resolve().parent, source=file)
