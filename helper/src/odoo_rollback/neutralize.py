"""Neutralizing a copy the way Odoo 16 does (``odoo/modules/neutralize.py``), without importing Odoo.

Each installed module may ship ``data/neutralize.sql`` (mail servers off, crons off, payment and tax
authority connectors in test mode...); Odoo runs them all on ``odoo-bin neutralize`` and on a restore
with "neutralize". The helper finds the same files in the addons folders of ``[neutralize] addons_path``
and runs them in one transaction on the copy, so a copy either is neutralized entirely or not at all.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .db import connect
from .errors import UsageError


def require_addons_path(cfg: Config) -> tuple[Path, ...]:
    if not cfg.neutralize.addons_path:
        raise UsageError(
            "neutralizing needs [neutralize] addons_path (Odoo's addons folders, as in odoo.conf) "
            "to find each module's data/neutralize.sql"
        )
    return cfg.neutralize.addons_path


def neutralization_queries(addons_path: tuple[Path, ...], modules: list[str]) -> list[tuple[str, str]]:
    """(module, SQL) of every installed module that has a data/neutralize.sql, in Odoo's addons order."""
    queries = []
    for module in modules:
        for folder in addons_path:
            script = folder / module / "data" / "neutralize.sql"
            if script.is_file():
                queries.append((module, script.read_text(encoding="utf-8").strip()))
                break  # the first addons folder holding the module wins, as in Odoo
    return queries


def neutralize_database(cfg: Config, dbname: str) -> list[str]:
    """Run the neutralization of every installed module on *dbname*; returns the modules it ran for."""
    addons_path = require_addons_path(cfg)
    with connect(cfg.database, dbname, autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT name FROM ir_module_module WHERE state IN ('installed', 'to upgrade', 'to remove') "
                "ORDER BY name"
            )
            modules = [row[0] for row in cur.fetchall()]
            queries = neutralization_queries(addons_path, modules)
            for _module, query in queries:
                cur.execute(query)
        conn.commit()
    return [module for module, _query in queries]
