#!/usr/bin/env bash
# Regenerates i18n/deployment_rollback.pot and merges it into every i18n/*.po (msgmerge).
# Odoo's exporter walks the module's folder, and this repository holds .venv (with a link back to the
# repository), so the export reads a clean copy of the tracked files instead.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
set -a
# shellcheck disable=SC1091
. "$venv/test.env"
set +a
work=$(mktemp -d)
db="rbi18n_$(date +%s)_$$"
cleanup() {
    PGPASSWORD=$ROLLBACK_TEST_PGPASSWORD psql -q -h "$ROLLBACK_TEST_PGHOST" -p "$ROLLBACK_TEST_PGPORT" \
        -U "$ROLLBACK_TEST_PGUSER" -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/addons/deployment_rollback"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/addons/deployment_rollback")
sed "s|$venv/addons|$work/addons|" "$ODOO_RC" >"$work/odoo.conf"
odoo=("$venv/bin/python" "$ODOO_SRC/odoo-bin" -c "$work/odoo.conf" -d "$db" --stop-after-init --log-level=warn)
"${odoo[@]}" -i deployment_rollback --without-demo=all
"${odoo[@]}" --i18n-export="$repo/i18n/deployment_rollback.pot" --modules=deployment_rollback
for po in "$repo"/i18n/*.po; do
    [ -e "$po" ] || continue
    msgmerge --quiet --update --backup=none --no-fuzzy-matching "$po" "$repo/i18n/deployment_rollback.pot"
done
# OCA's layout of a .po (entries sorted, a msgstr equal to its msgid left empty), which pre-commit's
# oca-checks-po demands; it reports what it rewrote, hence the status is not this script's.
"$venv/bin/oca-checks-po" --fix "$repo"/i18n/*.po "$repo"/i18n/*.pot >/dev/null || true
echo "i18n/deployment_rollback.pot: $(grep -c '^msgid ' "$repo/i18n/deployment_rollback.pot") messages"
