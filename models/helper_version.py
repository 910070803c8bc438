# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Whether the helper's version suits this addon's, and what to do when it does not.

Both are versioned ``16.0.x.y.z`` but separately: the addon's x moves with its data model, the helper's
with its API and journal. What matters is the Odoo series and the oldest helper whose API this addon
speaks, not equal numbers.
"""

# The oldest helper that answers every request this addon sends (signed API v1, journal read by its
# sequence, GET /v1/config, snapshot labels and standbys: a 16.0.1 helper refuses those keys). From
# 16.0.2.5.0 every request is signed for a database: an older helper refuses this addon's signatures.
HELPER_MIN_VERSION = "16.0.2.5.0"


def parse_version(text):
    """(16, 0, 1, 0, 0) from "16.0.1.0.0"; None when it is not such a version."""
    try:
        parts = tuple(int(part) for part in str(text or "").strip().split("."))
    except ValueError:
        return None
    return parts if len(parts) >= 2 else None


def version_problem(helper, addon, minimum=HELPER_MIN_VERSION):
    """None when *helper* suits *addon*; else ("series" | "old" | "unknown", details) to explain."""
    helper_parts, addon_parts = parse_version(helper), parse_version(addon)
    if helper_parts is None or addon_parts is None:
        return ("unknown", {"helper": helper or "?", "addon": addon or "?"})
    if helper_parts[:2] != addon_parts[:2]:
        return (
            "series",
            {
                "helper": helper,
                "addon": addon,
                "helper_series": ".".join(map(str, helper_parts[:2])),
                "addon_series": ".".join(map(str, addon_parts[:2])),
            },
        )
    if helper_parts < parse_version(minimum):
        return ("old", {"helper": helper, "addon": addon, "minimum": minimum})
    return None
