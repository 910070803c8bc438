#!/usr/bin/env bash
# make bench-scale: snapshot, restore and rollback with a warm standby at each size of SIZES (GB).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
set -a
. "$repo/.venv/test.env"
set +a
export PGUSER=$ROLLBACK_TEST_PGUSER PGPASSWORD=$ROLLBACK_TEST_PGPASSWORD PGHOST=$ROLLBACK_TEST_PGHOST PGPORT=$ROLLBACK_TEST_PGPORT
cd "$repo/bench"
# shellcheck disable=SC2086 # a list of sizes
exec "$repo/.venv/bin/python" scale.py --sizes ${SIZES:-0.5 1 2} "$@"
