"""Errors a user can cause and fix. The entry point prints them as one line and exits with 2."""

from __future__ import annotations


class StudyError(Exception):
    """Base class: the message alone (no traceback) tells the user what to change."""


class ConfigError(StudyError, ValueError):
    """A config key holds a value that cannot work; the message names the key and what is accepted."""


class DataError(StudyError):
    """A dataset is missing, incomplete or unreadable; the message names the path and how to proceed."""
