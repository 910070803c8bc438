"""The [smoke] section: defaults derived from [health], and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import write_config
from odoo_rollback.config import SmokeConfig, load_config
from odoo_rollback.errors import ConfigError


def config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    base: dict[str, dict[str, Any]] = {
        "database": {"name": "prod"},
        "filestore": {"path": str(tmp_path / "filestore")},
        "storage": {"path": str(tmp_path / "storage")},
    }
    return write_config(tmp_path / "odoo-rollback.toml", {**base, **sections})


def test_url_defaults_to_the_health_url_server(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, health={"url": "http://127.0.0.1:8069/web/login"}))
    assert cfg.smoke == SmokeConfig(url="http://127.0.0.1:8069")
    assert load_config(config(tmp_path)).smoke.url is None


def test_full_section(tmp_path: Path) -> None:
    cfg = load_config(
        config(
            tmp_path,
            smoke={
                "url": "https://erp.example.com/",
                "login": "smoke",
                "credentials_file": "smoke-password",
                "sql_checks": ["SELECT 1 FROM res_company;  "],
                "url_checks": ["/web/health", "https://erp.example.com/shop"],
                "timeout": 3,
            },
        )
    )
    assert cfg.smoke == SmokeConfig(
        url="https://erp.example.com",
        login="smoke",
        credentials_file=tmp_path / "smoke-password",
        sql_checks=("SELECT 1 FROM res_company",),
        url_checks=("/web/health", "https://erp.example.com/shop"),
        timeout=3.0,
    )


@pytest.mark.parametrize(
    ("smoke", "message"),
    [
        ({"url": "erp.example.com"}, "smoke.url must be an http:// or https:// URL"),
        ({"url": "file:///etc/passwd"}, "smoke.url must be an http:// or https:// URL"),
        ({"login": "smoke"}, "smoke.login and smoke.credentials_file go together"),
        ({"credentials_file": "/etc/pw"}, "smoke.login and smoke.credentials_file go together"),
        ({"sql_checks": ["SELECT 1; DROP TABLE res_partner"]}, "holds more than one statement"),
        ({"sql_checks": [" ; "]}, "smoke.sql_checks: an entry is empty"),
        ({"sql_checks": "SELECT 1"}, "smoke.sql_checks must be a list of strings"),
        ({"url_checks": ["ftp://example.com/"]}, "is neither an http(s) URL nor a path"),
        ({"url_checks": ["/web/health"]}, "needs smoke.url (or health.url)"),
        ({"timeout": 0}, "smoke.timeout must be greater than 0"),
        ({"login": 7, "credentials_file": "x"}, "smoke.login has the wrong type"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, smoke: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(config(tmp_path, smoke=smoke))
