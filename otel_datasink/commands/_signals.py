"""How a command that runs until stopped (``serve``, ``alert --watch``, ``collector``) stops.

SIGTERM is a service manager's stop: the command finishes what it is doing and exits 0. Ctrl-C (SIGINT) makes
the same clean stop, then exits 130 saying what was done, as every command does on Ctrl-C: a shell or a script
tells an interrupted command from one that ended by itself.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from otel_datasink.commands._errors import interrupted

_logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """While inside ``with StopSignals(...) as stop:``, SIGTERM and SIGINT set :attr:`event` instead of raising
    mid-work, and :attr:`received` names the first that came; the previous handlers are back on exit."""

    def __init__(self, finishing: str) -> None:
        """``finishing``: what the command finishes before it stops, for the log (``the current evaluation``)."""
        self.event = threading.Event()
        self.received: signal.Signals | None = None
        self._finishing = finishing
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is None:
            self.received = signal.Signals(number)
        _logger.info("%s: stopping after %s", signal.Signals(number).name, self._finishing)
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def raise_if_interrupted(received: signal.Signals | None, what_was_done: str) -> None:
    """Raises :func:`.interrupted` (exit status 130) saying ``what_was_done`` when Ctrl-C stopped the command;
    after SIGTERM, or no signal, the command goes on to its own exit status."""
    if received == signal.SIGINT:
        raise interrupted(what_was_done)
