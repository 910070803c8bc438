"""Build README.rst from the fragments in readme/, in the order OCA modules use (and ours after)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = [
    ("DESCRIPTION.rst", None),
    ("QUICKSTART.rst", "Quick start"),
    ("CONFIGURE.rst", "Configuration"),
    ("USAGE.rst", "Usage"),
    ("SAFETY.rst", "Safety guarantees"),
    ("SCREENSHOTS.rst", "Screenshots"),
    ("HELPER.rst", "The helper's manual"),
    ("DEVELOP.rst", "Development"),
    ("BENCHMARKS.rst", "Benchmarks"),
    ("HISTORY.rst", "Changelog"),
]


def build() -> str:
    title = "Deployment Rollback"
    parts = ["=" * len(title), title, "=" * len(title), "", ".. contents::", "   :local:", ""]
    for name, heading in SECTIONS:
        path = ROOT / "readme" / name
        if not path.exists():
            continue
        if heading:
            parts += [heading, "=" * len(heading), ""]
        parts += [path.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    text = build()
    target = ROOT / "README.rst"
    if "--check" in sys.argv:
        if target.read_text(encoding="utf-8") != text:
            sys.exit("README.rst is out of date: run python scripts/gen_readme.py")
    else:
        target.write_text(text, encoding="utf-8")
