# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A snapshot downloaded as Odoo's backup zip, streamed from the helper.

The helper writes the zip as it reads the snapshot; this controller passes the chunks on as they come,
so a snapshot of any size goes to the browser without being held in Odoo's memory or written to its
disk.
"""

from odoo import http
from odoo.http import content_disposition, request
from werkzeug.exceptions import NotFound

CHUNK = 1 << 16


class DeploymentRollbackController(http.Controller):
    @http.route("/deployment_rollback/snapshot/<int:snapshot_id>/odoo-zip", type="http", auth="user")
    def download_odoo_zip(self, snapshot_id):
        snapshot = request.env["deployment.snapshot"].browse(snapshot_id).exists()
        if not snapshot or not snapshot.helper_id:
            raise NotFound()
        snapshot._check_manager()
        response, connection = request.env["deployment.rollback.helper"]._open_stream(
            f"/v1/snapshots/{snapshot.helper_id}/odoo-zip"
        )

        def chunks():
            try:
                while True:
                    data = response.read(CHUNK)
                    if not data:
                        return
                    yield data
            finally:
                connection.close()

        filename = f"{snapshot.database or request.env.cr.dbname}-{snapshot.helper_id}.zip"
        return request.make_response(
            chunks(),
            headers=[("Content-Type", "application/zip"), ("Content-Disposition", content_disposition(filename))],
        )
