from . import (
    deployment_drill,
    deployment_operation,
    deployment_postmortem,
    deployment_postmortem_action,
    deployment_postmortem_timeline,
    deployment_snapshot,
    deployment_snapshot_count,
    deployment_snapshot_module,
    helper_client,
    res_config_settings,
)
