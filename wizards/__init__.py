from . import (
    deployment_drill_overview,
    deployment_drill_overview_line,
    deployment_overview,
    deployment_rollback_wizard,
    deployment_snapshot_capture,
    deployment_snapshot_compare,
)
