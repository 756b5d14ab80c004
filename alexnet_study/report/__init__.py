"""Sweep reports: collect a sweep dir's jobs into arms, compare them with the baseline, write
report.md/.html/.csv, jobs.csv and figures.

The names below load on first use: :mod:`alexnet_study.report.plots` is shared with training and
the analysis views, which must be able to import it without pulling in the whole report.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded now: the function ``collect`` shares its module's name, and a module attribute set by the
# import system would otherwise shadow a lazily loaded function.
from alexnet_study.report.collect import Job, Sweep, collect

_LAZY = {
    "SweepFailed": "alexnet_study.report.callback",
    "SweepReport": "alexnet_study.report.callback",
    "sweep_figures": "alexnet_study.report.figures",
    "Results": "alexnet_study.report.results",
    "analyse": "alexnet_study.report.results",
    "failures": "alexnet_study.report.write",
    "write_report": "alexnet_study.report.write",
}

__all__ = ["Job", "Sweep", "collect", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'alexnet_study.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
