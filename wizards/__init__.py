from . import deployment_snapshot_compare
