"""Sweep reports: collect a sweep dir's jobs into rows, write report.csv/.md and figures."""

from alexnet_study.report.callback import SweepFailed, SweepReport
from alexnet_study.report.collect import Job, Sweep, collect
from alexnet_study.report.write import failures, sweep_figures, write_report

__all__ = ["Job", "Sweep", "SweepFailed", "SweepReport", "collect", "failures", "sweep_figures", "write_report"]
