#!/usr/bin/env bash
# Runs every test: the helper's (real PostgreSQL and Docker engine) and the addon's (a real Odoo 16 on
# a freshly created database with the module installed). Exits non-zero on any failure.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
if [ ! -f "$venv/test.env" ]; then
    echo "no $venv/test.env: run 'make setup' first" >&2
    exit 2
fi
set -a
# shellcheck disable=SC1091
. "$venv/test.env"
set +a
export PATH="$venv/bin:$PATH"
status=0

echo "==> lint (ruff, mypy --strict on the helper, pylint-odoo, oca-checks-odoo-module, oca-checks-po)"
(cd "$repo" && pre-commit run --all-files) || status=1

echo "==> helper tests"
(cd "$repo/helper" && pytest -p no:odoo -p no:cacheprovider "$@" tests) || status=1

db="rbaddon_$(date +%s)_$$"
log="$venv/install-$db.log"
cleanup() { dropdb_quiet "$db"; }
dropdb_quiet() {
    PGPASSWORD=$ROLLBACK_TEST_PGPASSWORD psql -q -h "$ROLLBACK_TEST_PGHOST" -p "$ROLLBACK_TEST_PGPORT" \
        -U "$ROLLBACK_TEST_PGUSER" -d postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "==> installing deployment_rollback on a fresh database $db"
if ! python "$ODOO_SRC/odoo-bin" -c "$ODOO_RC" -d "$db" -i deployment_rollback --stop-after-init \
        --without-demo=all --log-level=info --logfile="$log"; then
    echo "installation failed; log: $log" >&2
    tail -n 40 "$log" >&2
    exit 1
fi
# The module must install without an error or a warning in the log.
if grep -E ' (WARNING|ERROR|CRITICAL) ' "$log"; then
    echo "the installation logged warnings or errors (above); log: $log" >&2
    status=1
fi

echo "==> addon tests (tours in headless Chromium through --odoo-http)"
(cd "$venv/addons" && pytest -p no:cacheprovider --odoo-http --odoo-config="$ODOO_RC" \
    --odoo-database="$db" "$@" "$venv/addons/deployment_rollback/tests") || status=1
exit $status
