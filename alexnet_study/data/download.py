"""Downloads that never write into a user's images and fail offline with one clear line.

Before a download, :func:`download_or_explain` checks where it would write: ``data.root`` must
not hold images itself or in its subfolders (a root pointing inside a dataset's own tree, such
as Caltech-101's ``101_ObjectCategories``, is named as that mistake), and the folder the download
writes into must be new, empty, or hold only what this download writes (an earlier attempt's
archive). After a failed download the folders it created and left empty are removed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from alexnet_study.data.files import IMAGE_EXTENSIONS
from alexnet_study.errors import DataError

log = logging.getLogger(__name__)

ALTERNATIVES = (
    "train on local images with data=image_folder data.root=<train/ val/ test/ class folders>, "
    "or try the pipeline offline with data=synthetic"
)


@dataclass(frozen=True)
class Target:
    """Where a dataset's download writes.

    ``root``: ``data.root``. ``folder``: the folder the download writes into (``root`` itself or a
    folder in it). ``writes``: the names the download creates in ``folder`` (None: ``folder`` is a
    shared data folder, e.g. CIFAR's, and may hold anything but images). ``tree``: names of folders
    inside the dataset's own layout, which ``data.root`` must not point at or into.
    """

    root: Path
    folder: Path
    writes: frozenset[str] | None = None
    tree: tuple[str, ...] = ()


def download_or_explain(
    title: str, expected: Path, fetch: Callable[[], object], how_to_place: str, target: Target
) -> None:
    """Check ``target`` (:func:`check_target`), then run ``fetch``; on a network or archive error
    remove the folders it created and left empty, and raise a :class:`DataError` that names the
    dataset, the path it looked for, the reason, how to place a copy by hand and the alternatives."""
    check_target(title, target)
    created = [p for p in (target.folder, *target.folder.parents) if not p.exists()]
    log.info("downloading %s into %s", title, target.folder)
    start = time.perf_counter()
    try:
        fetch()
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError; bad archives: RuntimeError
        _remove_empty(created)
        raise missing_dataset(title, expected, f"could not be downloaded ({_reason(err)})", how_to_place) from err
    log.info("downloaded and extracted %s in %.0f s", title, time.perf_counter() - start)


def check_target(title: str, target: Target) -> None:
    """Raise a :class:`DataError` if the download would write into a folder of the user's images
    or into a folder that holds anything but this download's own files."""
    root = target.root
    image = _first_image(root)
    if image is not None:
        inside = next((p for p in (root, root.parent) if p.name in target.tree), None)
        if inside is not None:
            raise DataError(
                f"data.root={root} points inside the {title} tree at {inside}; use its parent: data.root={inside.parent}"
            )
        raise DataError(
            f"data.root={root} already holds images (e.g. {image}) but not {title}'s layout; a download goes only "
            "into a new or empty folder: point data.root at the dataset, or at a new folder to download into"
        )
    if target.writes is None or not target.folder.is_dir():
        return
    others = sorted(
        p.name for p in target.folder.iterdir() if p.name not in target.writes and not p.name.startswith(".")
    )
    if others:
        raise DataError(
            f"{target.folder} is not empty (holds {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); "
            f"{title} downloads only into a new or empty folder: point data.root at one, or at the dataset"
        )


def _first_image(folder: Path) -> Path | None:
    """An image file in ``folder`` or in one of its subfolders (two levels, no deeper), or None."""
    if not folder.is_dir():
        return None
    subfolders = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            subfolders.append(entry)
        elif entry.suffix.lower() in IMAGE_EXTENSIONS:
            return entry
    for sub in subfolders:
        try:
            entries: Iterable[Path] = sorted(sub.iterdir())
        except OSError:  # unreadable: not the user's images as far as this check can tell
            continue
        image = next((e for e in entries if e.suffix.lower() in IMAGE_EXTENSIONS and e.is_file()), None)
        if image is not None:
            return image
    return None


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders in ``created`` (deepest first) that are empty."""
    for path in created:
        try:
            path.rmdir()
        except OSError:  # not empty (a partial archive, kept for the next attempt) or never created
            continue


def missing_dataset(title: str, expected: Path, why: str, how_to_place: str) -> DataError:
    return DataError(f"{title} is not in {expected.resolve()} and {why}. {how_to_place}, or {ALTERNATIVES}")


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__
