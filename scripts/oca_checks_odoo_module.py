# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""OCA's ``oca-checks-odoo-module`` for this repository, whose root is the addon.

The hook's own command looks for a module's ``__manifest__.py`` in the parents of each file *below*
the repository's top (OCA repositories hold one folder per module), so here it finds no module and
silently checks nothing. This runs the same checks on the root manifest, limited to the files
pre-commit passes, and exits non-zero on any finding. ``--fix`` applies the tool's automatic fixes.
"""

import argparse
import sys
from pathlib import Path

from oca_pre_commit_hooks import checks_odoo_module, utils

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="apply the automatic fixes")
    parser.add_argument("files", nargs="*", help="changed files (default: the whole addon)")
    args = parser.parse_args(argv)
    changed = {str((ROOT / name).resolve()) for name in args.files} or {str(ROOT)}
    checks = checks_odoo_module.ChecksOdooModule(
        str(ROOT / "__manifest__.py"), set(), set(), changed=changed, autofix=args.fix
    )
    for check in utils.getattr_checks(checks):
        check()
    for error in sorted(checks.checks_errors):
        print(error)
    return 1 if checks.checks_errors else 0


if __name__ == "__main__":
    sys.exit(main())
