from . import (
    deployment_operation,
    deployment_snapshot,
    deployment_snapshot_count,
    deployment_snapshot_module,
    helper_client,
    res_config_settings,
)
