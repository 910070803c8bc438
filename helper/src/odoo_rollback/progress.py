"""Progress of long steps, shown on a terminal only (never in --json output or logs)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _bar(**options: Any) -> Any:
    """A tqdm bar sized to the terminal. tqdm is imported here, by the commands that show one: the
    others (--json, Odoo's calls) do not pay its 13 ms of import."""
    from tqdm import tqdm  # noqa: PLC0415

    # A terminal that reports no size (a bare pty, a CI runner) would get no bar at all from tqdm.
    size = shutil.get_terminal_size((100, 20))
    return tqdm(leave=True, ncols=size.columns, nrows=size.lines, **options)


def _bytes_below(path: Path) -> int:
    total = 0
    if path.is_file():
        return path.stat().st_size
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue  # a file pg_dump is still renaming
    return total


@contextmanager
def watch_bytes(enabled: bool, description: str, path: Path, expected: int | None = None) -> Iterator[None]:
    """While the block runs, show how many bytes have been written below *path*, and the time spent."""
    if not enabled:
        yield
        return
    bar = _bar(total=expected, desc=description, unit="B", unit_scale=True, unit_divisor=1024)
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            bar.n = _bytes_below(path)
            bar.refresh()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.n = _bytes_below(path)
        bar.close()


@contextmanager
def count_tables(enabled: bool, description: str, total: int) -> Iterator[Callable[[str], None]]:
    """A callback for pg_restore --verbose lines that advances a bar by table restored."""
    if not enabled:
        yield lambda _line: None
        return
    bar = _bar(total=total, desc=description, unit="table")

    def on_line(line: str) -> None:
        if "processing data for table" in line:
            bar.update(1)

    try:
        yield on_line
    finally:
        bar.close()
