"""The helper must work when Odoo cannot even be imported: it never imports odoo."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import odoo_rollback


def test_no_helper_module_imports_odoo() -> None:
    names = [m.name for m in pkgutil.walk_packages(odoo_rollback.__path__, "odoo_rollback.")]
    assert "odoo_rollback.snapshot" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "assert not [m for m in sys.modules if m == 'odoo' or m.startswith('odoo.')], 'odoo was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
