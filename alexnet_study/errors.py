"""Errors a user can cause and fix. The entry point prints them as one line and exits with 2."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
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


class WriteError(StudyError):
    """A file of the run could not be written (a full disk, no permission); the message names the
    file (or folder) and the space left there."""


def no_space(err: BaseException | None) -> OSError | None:
    """The ``ENOSPC``/``EDQUOT`` :class:`OSError` behind ``err`` (itself, or in its cause or context
    chain), or ``None``: libraries wrap a full disk in their own errors (torch.save: a RuntimeError)."""
    pending, seen = [err], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        pending += [current.__cause__, current.__context__]
    return None


def space_left(path: str | os.PathLike[str]) -> str:
    """Free space on the filesystem holding ``path`` (or its nearest existing parent), e.g. ``1.9 MB free``."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return "free space unknown"
    units = ("bytes", "kB", "MB", "GB", "TB")
    index = 0
    while free >= 1000 and index < len(units) - 1:
        free, index = free / 1000, index + 1
    return f"{free:.0f} bytes free" if index == 0 else f"{free:.1f} {units[index]} free"
