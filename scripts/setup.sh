#!/usr/bin/env bash
# Sets up a development and test environment from nothing:
#   - the Odoo 16.0 source tree ($ODOO_SRC, default ~/.cache/odoo-src/16.0; cloned only when missing),
#   - a virtual environment in .venv with Odoo's requirements (python-ldap left out), the helper in
#     editable mode, pytest-odoo and the lint tools,
#   - the PostgreSQL login roles the tests use, and the config files that point at them.
# Safe to run again: every step checks what is already there.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
odoo_src=${ODOO_SRC:-$HOME/.cache/odoo-src/16.0}
venv=${VENV:-$repo/.venv}
python=${PYTHON:-python3}
pg_host=${PGHOST_TEST:-127.0.0.1}
pg_port=${PGPORT_TEST:-5432}

say() { printf '==> %s\n' "$*"; }

# 1. Odoo source ------------------------------------------------------------------------------
if [ ! -f "$odoo_src/odoo-bin" ]; then
    say "cloning Odoo 16.0 into $odoo_src"
    mkdir -p "$(dirname "$odoo_src")"
    git clone --depth 1 --branch 16.0 https://github.com/odoo/odoo.git "$odoo_src"
else
    say "Odoo source: $odoo_src"
fi

# 2. Virtual environment ------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
    say "creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
stamp="$venv/.requirements-stamp"
wanted=$(cat "$0" "$odoo_src/requirements.txt" "$repo/helper/pyproject.toml" "$repo/requirements-dev.txt" | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    say "installing Odoo's requirements, the helper and the test tools"
    "${pip[@]}" install --upgrade pip 'setuptools<70' wheel
    # python-ldap needs the LDAP headers and only auth_ldap uses it. Odoo pins requests 2.25.1, older
    # than the Docker SDK needs (>= 2.26); Odoo 16 itself runs on newer ones (its Python 3.12 line pins
    # 2.31), so the pin becomes a range. polib likewise: OCA's po checks (pre-commit) need 1.2, whose
    # API Odoo's translation export uses unchanged.
    sed -E -e '/^python-ldap/Id' -e 's/^requests==2\.25\.1/requests>=2.26,<2.33/' \
        -e 's/^polib==1\.1\.0/polib>=1.1.0,<2/' \
        "$odoo_src/requirements.txt" >"$venv/odoo-requirements.txt"
    # One resolver run for everything, so that no later step downgrades what an earlier one needed.
    "${pip[@]}" install -r "$venv/odoo-requirements.txt" -e "$repo/helper[test]" -r "$repo/requirements-dev.txt"
    echo "$wanted" >"$stamp"
else
    say "requirements already installed"
fi
# Odoo is imported from its source tree, which stays untouched (no egg-info written into it).
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$odoo_src" >"$site/odoo-src.pth"

# The off-host copy tests talk to moto's S3 server, a separate program with its own environment: its
# Flask and Werkzeug would not fit Odoo's pinned Werkzeug.
if [ ! -x "$venv/s3/bin/moto_server" ]; then
    say "installing moto's S3 server in $venv/s3 (off-host copy tests)"
    "$python" -m venv "$venv/s3"
    "$venv/s3/bin/python" -m pip --disable-pip-version-check --quiet install 'moto[server]>=5,<6'
fi

# 3. Addons path: Odoo finds a module by its folder name, and this repository is the module.
mkdir -p "$venv/addons"
ln -sfn "$repo" "$venv/addons/deployment_rollback"

# 4. PostgreSQL roles ---------------------------------------------------------------------------
# Odoo runs as a CREATEDB role (it refuses "postgres"); the helper runs as a superuser, as it does
# in production, because it renames databases and ends other sessions.
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -n -u postgres "$@"; fi
}
ensure_role() { # name password attributes
    local exists
    exists=$(as_postgres psql -p "$pg_port" -d postgres -tAc \
        "SELECT 1 FROM pg_roles WHERE rolname = '$1'" 2>/dev/null || true)
    if [ "$exists" != 1 ]; then
        say "creating PostgreSQL role $1"
        as_postgres psql -q -p "$pg_port" -d postgres -v ON_ERROR_STOP=1 \
            -c "CREATE ROLE $1 LOGIN $3 PASSWORD '$2'"
    fi
}
if ! pg_isready -q -h "$pg_host" -p "$pg_port"; then
    echo "PostgreSQL is not answering on $pg_host:$pg_port; start it first" \
        "(pg_ctlcluster --skip-systemctl-redirect 15 main start)" >&2
    exit 1
fi
ensure_role rollback_odoo rollback_odoo CREATEDB
ensure_role rollback_helper rollback_helper SUPERUSER

# 5. Config files for the tests ------------------------------------------------------------------
cat >"$venv/odoo.conf" <<CONF
[options]
db_host = $pg_host
db_port = $pg_port
db_user = rollback_odoo
db_password = rollback_odoo
addons_path = $odoo_src/addons,$odoo_src/odoo/addons,$venv/addons
data_dir = $venv/odoo-data
without_demo = all
log_level = info
CONF
cat >"$venv/test.env" <<CONF
ODOO_SRC=$odoo_src
ODOO_RC=$venv/odoo.conf
ROLLBACK_TEST_PGHOST=$pg_host
ROLLBACK_TEST_PGPORT=$pg_port
ROLLBACK_TEST_PGUSER=rollback_helper
ROLLBACK_TEST_PGPASSWORD=rollback_helper
ROLLBACK_TEST_ODOO_PGUSER=rollback_odoo
ROLLBACK_TEST_S3_SERVER=$venv/s3/bin/moto_server
CONF
say "ready: run 'make test'"
