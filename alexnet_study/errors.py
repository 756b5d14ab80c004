"""Errors a user can cause and fix. The entry point prints them as one line and exits with 2."""

from __future__ import annotations

from typing import Any


class StudyError(Exception):
    """Base class: the message alone (no traceback) tells the user what to change."""


class ConfigError(StudyError, ValueError):
    """A config key holds a value that cannot work; the message names the key and what is accepted."""


class DataError(StudyError):
    """A dataset is missing, incomplete or unreadable; the message names the path and how to proceed."""


class CheckpointError(StudyError):
    """A checkpoint cannot be read or written; the message names the file and the way forward."""


class DivergenceError(StudyError):
    """The training loss became NaN or infinite; the message names the epoch, step and learning rate."""

    def __init__(self, message: str, *, epoch: int, step: int, lr: float | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.lr = epoch, step, lr


def check_int(key: str, value: Any, minimum: int, hint: str = "") -> int:
    """``value`` if it is an integer (a bool is not) >= ``minimum``; else a :class:`ConfigError`
    naming ``key``, with ``hint`` (e.g. what 0 means) at the end of the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r}: must be an integer >= {minimum}" + (f" {hint}" if hint else ""))
    return value


def first_line(err: BaseException, empty: str | None = None) -> str:
    """The first line of ``err``'s message (stripped), for one-line reports; for an empty message,
    ``empty`` if given, else the error's type name."""
    message = str(err).strip()
    if message:
        return message.splitlines()[0]
    return type(err).__name__ if empty is None else empty
