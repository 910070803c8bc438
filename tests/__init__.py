from . import (
    test_deployment_drill,
    test_deployment_import,
    test_deployment_overview,
    test_deployment_postmortem,
    test_deployment_snapshot,
    test_helper_integration,
    test_i18n,
    test_install,
    test_rollback_communication,
    test_rollback_measure,
    test_rollback_wizard,
    test_tours,
)
