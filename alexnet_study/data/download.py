"""Downloads that fail offline with one clear line: what was missing, where, and the ways out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alexnet_study.errors import DataError

ALTERNATIVES = (
    "train on local images with data=image_folder data.root=<train/ val/ test/ class folders>, "
    "or try the pipeline offline with data=synthetic"
)


def download_or_explain(title: str, expected: Path, fetch: Callable[[], object], how_to_place: str) -> None:
    """Run ``fetch``; on a network or archive error raise a :class:`DataError` that names the
    dataset, the path it looked for, the reason, how to place a copy by hand and the alternatives."""
    try:
        fetch()
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError; bad archives: RuntimeError
        raise missing_dataset(title, expected, f"could not be downloaded ({_reason(err)})", how_to_place) from err


def missing_dataset(title: str, expected: Path, why: str, how_to_place: str) -> DataError:
    return DataError(f"{title} is not in {expected.resolve()} and {why}. {how_to_place}, or {ALTERNATIVES}")


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__
