"""Step events that a long run (a restore) publishes, and the little state they leave.

The run publishes; whoever cares subscribes: the journal writer (synchronously, so that a line is on
disk before the step goes on) and the progress mailer (which reads :meth:`RunProgress.view` from its
own thread). This module imports nothing of the helper, so that neither side imports the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

START = "start"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass(frozen=True)
class StepEvent:
    """One line of a run: a step's ``start``/``done``/``failed``/``skipped``, or a note (``is_step``
    false: a sub-step such as ``swap_database``, the undo, a restart), which leaves the state as it is."""

    step: str
    status: str
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""  # what people are told the step does
    is_step: bool = True


@dataclass(frozen=True)
class ProgressView:
    """A consistent copy of the state, safe to use from another thread."""

    operation: str
    database: str
    snapshot: str
    step: str
    text: str
    failed: tuple[str, ...]
    completed: tuple[str, ...]
    error: str | None


Listener = Callable[[StepEvent], None]


class RunProgress:
    """Where a run is, updated by the events it publishes; every read and write under one lock."""

    def __init__(self, database: str, snapshot: str, operation: str = "", completed: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._operation = operation
        self.database = database
        self.snapshot = snapshot
        self._step = ""
        self._text = ""
        self._failed: list[str] = []
        self._completed: list[str] = list(completed)
        self._error: str | None = None

    @property
    def operation(self) -> str:
        with self._lock:
            return self._operation

    @operation.setter
    def operation(self, value: str) -> None:
        with self._lock:
            self._operation = value

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def publish(self, event: StepEvent) -> None:
        """Update the state, then tell every listener, in the order they subscribed, in this thread."""
        with self._lock:
            if event.is_step:
                if event.status in (START, SKIPPED):
                    self._step, self._text = event.step, event.text or event.step
                if event.status in (DONE, SKIPPED):
                    self._completed.append(event.step)
                elif event.status == FAILED:
                    self._failed.append(event.step)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)

    def note(self, step: str, status: str, message: str = "", data: dict[str, Any] | None = None) -> None:
        self.publish(StepEvent(step, status, message, dict(data or {}), is_step=False))

    def fail(self, error: str) -> None:
        """The run as a whole failed (it is being undone)."""
        with self._lock:
            self._error = error

    def view(self) -> ProgressView:
        with self._lock:
            return ProgressView(
                operation=self._operation,
                database=self.database,
                snapshot=self.snapshot,
                step=self._step,
                text=self._text,
                failed=tuple(self._failed),
                completed=tuple(self._completed),
                error=self._error,
            )
