from . import (
    test_deployment_drill,
    test_deployment_postmortem,
    test_deployment_snapshot,
    test_helper_integration,
    test_install,
)
