"""``+hparams_search=optuna``: the search space, a tiny stored study with a diverging trial, resuming it,
and the exit status of a search whose trials fail."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra_plugins.alexnet_study_sweeper.optuna_sweeper import distribution
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from alexnet_study.config.validate import check_targets
from alexnet_study.report import SweepFailed, SweepReport

from ..conftest import TINY, make_job, multirun_in_process

SEARCHED = {"optim.lr", "optim.weight_decay", "model.dropout", "data.batch_size", "sched.scheduler.step_size",
            "sched.scheduler.gamma"}  # fmt: skip
# Trial 0 is enqueued with a learning rate that makes the loss NaN within a few steps.
STUDY = [*TINY, "~callbacks.dataset_views", "+hparams_search=optuna", "hydra.sweeper.enqueue=[{optim.lr:1000.0}]"]


@pytest.mark.parametrize("experiment", ["activation_sweep", "lr_sweep"])
def test_search_composes_over_an_experiment_with_a_step_schedule(make_cfg, experiment: str) -> None:
    cfg = make_cfg(f"+experiment={experiment}", "+hparams_search=optuna", "epochs=12")
    check_targets(cfg)  # the sweeper plugin passes the _target_ allowlist
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.alexnet_study_sweeper.optuna_sweeper.OptunaStudySweeper"
    assert set(sweeper.search_space) == SEARCHED
    assert sweeper.search_space["sched.scheduler.step_size"] == "int(interval(1, 12))"  # follows epochs
    assert cfg.sched.scheduler._target_ == "torch.optim.lr_scheduler.StepLR"  # over the CIFAR recipe's none
    assert cfg.task_name == experiment == sweeper.study_name
    assert cfg.hydra.callbacks.sweep_report.fail_when == "all"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("tag(log, interval(1e-4, 1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
        ("interval(0.0, 0.7)", FloatDistribution(0.0, 0.7)),
        ("int(interval(1, 30))", IntDistribution(1, 30)),
        ("choice(32, 64, 128)", CategoricalDistribution([32, 64, 128])),
        ("choice(relu, tanh)", CategoricalDistribution(["relu", "tanh"])),
        ("range(1, 4)", CategoricalDistribution([1, 2, 3])),
    ],
)
def test_sweep_expressions_become_optuna_distributions(expression: str, expected) -> None:
    (override,) = OverridesParser.create().parse_overrides([f"key={expression}"])
    assert distribution(override) == expected


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The 4-trial study, then the same command on the same sweep dir asking for 6 trials (after a
    crashed sweep left a trial running)."""
    root = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as monkeypatch:
        sweep = multirun_in_process(monkeypatch, root, *STUDY, "hydra.sweeper.n_trials=4")
        storage = f"sqlite:///{sweep / 'optuna.db'}"
        first = optuna.load_study(study_name="train", storage=storage)
        outcome = {"sweep": sweep, "first": [(t.number, t.state, t.value, dict(t.params)) for t in first.trials]}
        outcome["first_report"] = (sweep / "report.md").read_text()
        first.ask()  # trial 4: "running" forever, as if its sweep had been killed
        multirun_in_process(monkeypatch, root, *STUDY, f"hydra.sweep.dir={sweep}", "hydra.sweeper.n_trials=6")
    outcome["second"] = optuna.load_study(study_name="train", storage=storage).trials
    return outcome


@pytest.mark.slow
def test_a_diverging_trial_is_recorded_as_failed_and_the_study_goes_on(study: dict) -> None:
    trials = study["first"]
    assert [state for _, state, _, _ in trials] == [TrialState.FAIL, *[TrialState.COMPLETE] * 3]
    assert trials[0][3]["optim.lr"] == 1000.0
    assert all(set(params) == SEARCHED for _, _, _, params in trials)
    assert all(0.0 <= value <= 1.0 for _, _, value, _ in trials[1:])  # val/acc_best
    # The report has every trial: its parameters, status and metrics, and the study's best.
    with (study["sweep"] / "jobs.csv").open() as handle:
        rows = {row["job"]: row for row in csv.DictReader(handle)}
    assert rows["0"]["status"] == "diverged" and float(rows["0"]["optim.lr"]) == 1000.0
    for number, _, value, params in trials[1:]:
        row = rows[str(number)]
        assert row["status"] == "ok" and math.isclose(float(row["best_val_acc"]), value)
        assert math.isclose(float(row["optim.lr"]), params["optim.lr"])
    best = max(trials[1:], key=lambda trial: trial[2])
    assert "## Optuna study" in study["first_report"] and f"Best: trial {best[0]}," in study["first_report"]
    assert "4 trials: 3 complete, 1 fail." in study["first_report"]


@pytest.mark.slow
def test_the_same_command_on_the_same_sweep_dir_resumes_the_stored_study(study: dict) -> None:
    trials = study["second"]
    assert len(trials) == 6
    assert [t.state for t in trials[:4]] == [state for _, state, _, _ in study["first"]]  # kept as they were
    assert trials[4].state == TrialState.FAIL  # left running by the "killed" sweep
    assert trials[5].state == TrialState.COMPLETE
    assert trials[5].params["optim.lr"] != 1000.0  # the enqueued setting is not tried twice
    assert trials[5].params not in [params for _, _, _, params in study["first"]]  # the sampler moved on
    sweep: Path = study["sweep"]
    assert sorted(int(p.name) for p in sweep.iterdir() if p.name.isdigit()) == [0, 1, 2, 3, 5]  # trial 4 never ran
    with (sweep / "jobs.csv").open() as handle:
        assert [row["job"] for row in csv.DictReader(handle)] == ["0", "1", "2", "3", "5"]


def test_a_search_fails_only_when_no_trial_finished(tmp_path: Path, caplog) -> None:
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["optim.lr=1000"], status="diverged")
    make_job(sweep, 1, ["optim.lr=0.01"], best_val_acc=0.5)
    config = {"hydra": {"sweep": {"dir": str(sweep)}}}

    with caplog.at_level(logging.WARNING):
        SweepReport(fail_when="all").on_multirun_end(OmegaConf.create(config))
    assert "1 of 2 sweep jobs did not finish ok" in caplog.text
    with pytest.raises(SweepFailed):  # a study: every failed job is a failure
        SweepReport().on_multirun_end(OmegaConf.create(config))
    make_job(tmp_path / "all_failed", 0, ["optim.lr=1000"], status="diverged")
    config["hydra"]["sweep"]["dir"] = str(tmp_path / "all_failed")
    with pytest.raises(SweepFailed, match="1 of 1 sweep jobs"):
        SweepReport(fail_when="all").on_multirun_end(OmegaConf.create(config))


def test_a_study_that_already_has_its_trials_still_writes_its_summary(tmp_path: Path) -> None:
    from hydra.types import HydraContext
    from hydra_plugins.alexnet_study_sweeper.optuna_sweeper import STUDY_FILE, OptunaStudySweeper

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    stored = optuna.create_study(study_name="done", storage=f"sqlite:///{sweep / 'optuna.db'}", direction="maximize")
    stored.tell(stored.ask(), 0.5)
    sweeper = OptunaStudySweeper(n_trials=1, study_name="done")
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    sweeper.launcher = object()  # never asked: there is no trial left to launch
    sweeper.hydra_context = HydraContext(config_loader=None, callbacks=None)
    assert sweeper.sweep([]) == []
    summary = OmegaConf.load(sweep / STUDY_FILE)
    assert summary.best.value == 0.5 and [t.number for t in summary.trials] == [0]
