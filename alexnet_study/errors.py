"""Errors a user can cause and fix. The entry point prints them as one line and exits with 2."""

from __future__ import annotations

import errno
import math
import os
import re
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


def check_number(
    key: str, value: Any, minimum: float, *, inclusive: bool = True, below: float | None = None, hint: str = ""
) -> float:
    """``value`` if it is a finite number (a bool is not) >= ``minimum`` (> with ``inclusive=False``)
    and < ``below``; else a :class:`ConfigError` naming ``key`` and the accepted range."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= minimum if inclusive else value > minimum) and (below is None or value < below)
    if not ok:
        accepted = f"{'>=' if inclusive else '>'} {minimum:g}" + (f" and < {below:g}" if below is not None else "")
        raise ConfigError(f"{key}={value!r}: must be a finite number {accepted}" + (f" {hint}" if hint else ""))
    return float(value)


def first_line(err: BaseException, empty: str | None = None) -> str:
    """The first line of ``err``'s message (stripped), for one-line reports; for an empty message,
    ``empty`` if given, else the error's type name."""
    message = str(err).strip()
    if message:
        return message.splitlines()[0]
    return type(err).__name__ if empty is None else empty


def quoted(path: Any) -> str:
    """``path`` for a one-line message: quoted, with a newline or other control character escaped
    (``repr`` of the string), so a strange file name cannot split or forge the line."""
    return repr(str(path))


def unpickling_detail(err: BaseException) -> str:
    """What ``torch.load(weights_only=True)`` refused in a file (``unsupported GLOBAL posix.system``),
    without torch's advice on loading the file unsafely."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error: ([^\n]*)", text) or re.search(r"(unsupported GLOBAL [^\n]*)", text)
    if found:
        return found.group(1).split(". ")[0].strip().rstrip(".")
    safe = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return safe[0] if safe else type(err).__name__


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
