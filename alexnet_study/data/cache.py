"""Decode once: decoded datasets cached on disk, keyed by the file list, sizes, mtimes and settings."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# Bump when the decoded layout changes, so stale caches are never read.
CACHE_FORMAT = 2


def fingerprint(splits: Mapping[str, Iterable[Path]], root: Path, **settings: Any) -> str:
    """A hash of each file's split, path (relative to ``root``), size and mtime, plus the settings."""
    digest = hashlib.sha256(f"format={CACHE_FORMAT};{sorted(settings.items())!r}".encode())
    for split, files in splits.items():
        for path in files:
            stat = path.stat()
            name = path.relative_to(root).as_posix()
            digest.update(f"{split}\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached(path: Path, build: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Load ``path`` if it exists, else ``build()`` and save it atomically. Returns (payload, hit)."""
    if path.is_file():
        log.info("loading %s (%.0f MB)", path, path.stat().st_size / 1e6)
        try:
            return torch.load(path, map_location="cpu", weights_only=True), True
        except Exception as err:  # a truncated or foreign file: rebuild it rather than fail
            log.warning("ignoring unreadable cache %s (%s); decoding again", path, err)
    payload = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("writing %s", path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as tmp:
        torch.save(payload, tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp.name, 0o666 & ~umask)  # NamedTemporaryFile creates 0600; a cache is as shareable as data
    os.replace(tmp.name, path)
    return payload, False
