"""Ctrl-C and SIGTERM as one exception that survives Lightning.

Lightning turns a ``KeyboardInterrupt`` inside ``trainer.fit`` into ``sys.exit(1)`` and SIGTERM
into a ``SystemExit``; Optuna catches neither, so a trial would stay RUNNING. droplab's handlers
remember the signal, and ``training.fit`` turns Lightning's ``SystemExit`` back into
:class:`Interrupted` (a ``KeyboardInterrupt``, which Optuna records as a failed trial).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

received: int | None = None


class Interrupted(KeyboardInterrupt):
    """The user (SIGINT) or the system (SIGTERM) asked us to stop."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handler(signum: int, _frame: FrameType | None) -> None:
    global received
    received = signum
    raise Interrupted(signum)


def install() -> None:
    """Raise :class:`Interrupted` on SIGINT and SIGTERM (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


def last_signal() -> int:
    """The signal that stopped us, SIGINT when none was recorded (a bare Ctrl-C)."""
    return received if received is not None else signal.SIGINT
