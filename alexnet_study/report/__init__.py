"""Sweep reports: collect a sweep dir's jobs into arms, compare them with the baseline, write
report.md/.html/.csv, jobs.csv and figures."""

from alexnet_study.report.callback import SweepFailed, SweepReport
from alexnet_study.report.collect import Job, Sweep, collect
from alexnet_study.report.figures import sweep_figures
from alexnet_study.report.results import Results, analyse
from alexnet_study.report.write import failures, write_report

__all__ = [
    "Job", "Results", "Sweep", "SweepFailed", "SweepReport", "analyse", "collect", "failures", "sweep_figures",
    "write_report",
]  # fmt: skip
