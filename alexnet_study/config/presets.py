"""Where ``conf/`` is, and one ``conf/GROUP/NAME.yaml`` preset read on its own.

A model preset is all a network needs: :func:`alexnet_study.api.build_model` and the benchmark
build networks from one without composing the data, trainer and logger groups around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alexnet_study.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The ``conf/`` directory: shipped inside the wheel as ``alexnet_study/conf``, or the
    repository's top-level ``conf/`` in a source checkout (editable install)."""
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml next to {PACKAGE_DIR} or inside it; the installation is incomplete")


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def preset(group: str, name: str) -> dict[str, Any]:
    """``conf/GROUP/NAME.yaml`` as a dict, its ``defaults`` (parents in the same group) merged first."""
    import yaml

    path = config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        accepted = ", ".join(sorted(p.stem for p in path.parent.glob("[!_]*.yaml")))
        raise ConfigError(f"{group}={name!r}: no {path}; accepted: {accepted}")
    node = yaml.safe_load(path.read_text()) or {}
    merged: dict[str, Any] = {}
    for parent in node.pop("defaults", None) or []:
        if isinstance(parent, str) and parent != "_self_":
            merged = _merge(merged, preset(group, parent))
    return _merge(merged, node)
