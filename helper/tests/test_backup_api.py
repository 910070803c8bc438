"""What Odoo reads of the backups through the API: a snapshot as an Odoo zip (streamed), kept databases,
and the retention settings it shows read-only."""

from __future__ import annotations

import io
import json
import zipfile

from conftest import HelperEnv, Served


def test_a_snapshot_downloads_as_an_odoo_zip(served: Served, helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "manual")
    body = io.BytesIO()
    assert served.client.download(f"/v1/snapshots/{snap['id']}/odoo-zip", body) == 200
    with zipfile.ZipFile(body) as zf:
        assert zf.namelist()[0] == "dump.sql"
        assert json.loads(zf.read("manifest.json"))["db_name"] == helper_env.db.name
        assert len([n for n in zf.namelist() if n.startswith("filestore/")]) == 30
    missing = io.BytesIO()
    assert served.client.download("/v1/snapshots/20200101T000000Z-manual-abcdef/odoo-zip", missing) == 404


def test_config_says_the_retention_and_kept_lists_what_a_restore_kept(
    served: Served, helper_env: HelperEnv, snapshot_then_changes: dict[str, object]
) -> None:
    status, config = served.client.request("GET", "/v1/config")
    assert status == 200
    retention = config["retention"]
    assert retention["kept"] == {"keep_last": 2, "max_days": 7.0, "text": "keep the last 2 and at most 7 days"}
    assert retention["text"] == "snapshots: keep everything; kept databases: keep the last 2 and at most 7 days"

    restored = helper_env.run_json("restore", str(snapshot_then_changes["id"]), "--yes")
    status, kept = served.client.request("GET", "/v1/kept")
    assert status == 200
    assert [(k["name"], k["purpose"], k["protected"]) for k in kept["kept"]] == [
        (restored["kept_as"], "failed", "kept by the newest restore")
    ]
    assert kept["kept"][0]["size"] > 0
