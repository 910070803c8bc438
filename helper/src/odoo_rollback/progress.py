"""Progress of long steps, shown on a terminal only (never in --json output or logs)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm


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
    bar = tqdm(total=expected, desc=description, unit="B", unit_scale=True, unit_divisor=1024, leave=True)
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
