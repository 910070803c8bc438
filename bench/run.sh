#!/usr/bin/env bash
# make bench: the snapshot and restore benchmarks (not part of make test). SCALE=1.0 is about 1 GB.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
set -a
. "$repo/.venv/test.env"
set +a
export PGUSER=$ROLLBACK_TEST_PGUSER PGPASSWORD=$ROLLBACK_TEST_PGPASSWORD PGHOST=$ROLLBACK_TEST_PGHOST PGPORT=$ROLLBACK_TEST_PGPORT
cd "$repo/bench"
exec "$repo/.venv/bin/python" bench.py --scale "${SCALE:-1.0}" "$@"
