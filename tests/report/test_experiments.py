"""Every study as a Hydra experiment, the sweep report, and parallel sweeps on one machine."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from alexnet_study.models.layers import DropConnectLinear
from alexnet_study.report import collect, plots, write_report
from alexnet_study.report.__main__ import main as report_main

from ..conftest import REPO_ROOT, SMOKE, make_job, multirun_in_process, run_cli

EXPERIMENTS = sorted(p.stem for p in (REPO_ROOT / "conf" / "experiment").glob("*.yaml") if not p.stem.startswith("_"))
# Jobs each experiment's own sweep launches.
JOBS = {
    "stride_sweep": 5, "conv_depth_sweep": 3, "fc_depth_sweep": 4, "depth_grid": 15, "activation_sweep": 4,
    "loss_sweep": 2, "batchnorm_sweep": 2, "optimizer_sweep": 4, "lr_sweep": 3, "step_size_sweep": 4,
    "weight_decay_sweep": 3, "gamma_sweep": 4, "augmentation_sweep": 5,
    "cifar100_transfer": 6, "freeze_sweep": 3, "transfer_vs_scratch": 2, "arch_compare": 3, "hymenoptera_finetune": 2,
}  # fmt: skip
# Studies that load ImageNet weights: their smoke runs plant a weight file (tests/models/test_transfer.py).
TRANSFER_EXPERIMENTS = (
    "cifar100_transfer",
    "freeze_sweep",
    "transfer_vs_scratch",
    "arch_compare",
    "hymenoptera_finetune",
)


def multirun(cwd: Path, *overrides: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    result = run_cli(*overrides, "-m", cwd=cwd)
    sweeps = sorted(cwd.glob("outputs/*/multiruns/*"))
    assert len(sweeps) == 1, (sweeps, result.stderr[-3000:])
    return result, sweeps[0]


def test_every_experiment_is_listed_with_its_job_count() -> None:
    assert sorted(JOBS) == EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_declares_its_sweep(make_cfg, name: str) -> None:
    cfg = make_cfg(f"+experiment={name}")
    assert cfg.task_name == name
    params = cfg.hydra.sweeper.params
    assert params, "an experiment declares its own sweep"
    # The study's own defaults are set and can be overridden from the command line.
    overridden = make_cfg(f"+experiment={name}", "data.batch_size=7", "epochs=2")
    assert overridden.data.batch_size == 7 and overridden.trainer.max_epochs == 2


@pytest.mark.parametrize(
    ("name", "dataset", "model", "optimizer", "lr", "batch", "epochs"),
    [
        ("stride_sweep", "Flowers17DataModule", "alexnet_tflearn", "SGD", 1e-3, 64, 100),
        ("conv_depth_sweep", "CIFARDataModule", "alexnet", "SGD", 1e-2, 128, 10),
        ("depth_grid", "CIFARDataModule", "alexnet", "SGD", 1e-2, 128, 10),
        ("lr_sweep", "Caltech101DataModule", "alexnet", "SGD", 1e-2, 256, 30),
    ],
)
def test_experiment_recipes(make_cfg, name, dataset, model, optimizer, lr, batch, epochs) -> None:
    cfg = make_cfg(f"+experiment={name}")
    assert cfg.data._target_.endswith(dataset) and cfg.model.name == model
    assert cfg.optim._target_.endswith(optimizer) and cfg.optim.lr == pytest.approx(lr)
    assert cfg.data.batch_size == batch and cfg.trainer.max_epochs == epochs


def test_caltech_recipe_matches_the_study(make_cfg) -> None:
    cfg = make_cfg("+experiment=gamma_sweep")
    assert cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == pytest.approx(5e-5)
    assert cfg.sched.scheduler._target_.endswith("StepLR")
    assert (cfg.sched.scheduler.step_size, cfg.sched.scheduler.gamma) == (20, 0.1)
    assert cfg.data.normalize == "half" and cfg.data.val_fraction == 0.5


STRIDE_VARIANTS = {
    "s222_dropout55": ((2, 2, 2), (0.5, 0.5), False),
    "s333_dropout55": ((3, 3, 3), (0.5, 0.5), False),
    "s332_dropout43": ((3, 3, 2), (0.4, 0.3), False),
    "s322_dropout43": ((3, 2, 2), (0.4, 0.3), False),
    "s332_dropconnect43": ((3, 3, 2), (0.4, 0.3), True),
}


def test_the_stride_sweep_is_exactly_the_five_models(make_cfg) -> None:
    variants = sorted(p.stem for p in (REPO_ROOT / "conf" / "variant" / "stride").glob("*.yaml"))
    assert variants == sorted(STRIDE_VARIANTS)
    for variant, (strides, rates, dropconnect) in STRIDE_VARIANTS.items():
        cfg = make_cfg("+experiment=stride_sweep", f"variant/stride={variant}")
        with torch.device("meta"):
            net = instantiate(cfg.model)
        assert tuple(m.stride for m in net.modules() if isinstance(m, nn.MaxPool2d)) == strides
        assert sum(isinstance(m, nn.LocalResponseNorm) for m in net.modules()) == 3
        assert isinstance(net.classifier[1], nn.Tanh)
        if dropconnect:
            assert [m.p for m in net.modules() if isinstance(m, DropConnectLinear)] == list(rates)
            assert not any(isinstance(m, nn.Dropout) for m in net.modules())
        else:
            assert tuple(m.p for m in net.modules() if isinstance(m, nn.Dropout)) == rates


def _variant_sweeps() -> list[tuple[str, str, str]]:
    """(experiment, swept key, option) for every variant an experiment's own sweep runs."""
    found = []
    for name in EXPERIMENTS:
        params = OmegaConf.load(REPO_ROOT / "conf" / "experiment" / f"{name}.yaml").hydra.sweeper.params
        for key, value in params.items():
            if key.lstrip("+").startswith("variant/"):
                every = sorted(p.stem for p in (REPO_ROOT / "conf" / key.lstrip("+")).glob("*.yaml"))
                found += [(name, key, option) for option in (every if value == "glob(*)" else value.split(","))]
    return found


def _leaves(node: dict, prefix: str = "") -> list[tuple[str, object]]:
    leaves = []
    for key, value in node.items():
        leaves += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return leaves


@pytest.mark.parametrize(("name", "key", "option"), _variant_sweeps())
def test_every_variant_reaches_its_jobs_config_in_the_sweepers_order(make_cfg, name, key, option) -> None:
    # Hydra's sweeper lists its params before the command line's +experiment=NAME: the variant must still win
    # over the experiment's recipe (its group overrides and its values).
    cfg = make_cfg(f"{key}={option}", f"+experiment={name}")
    variant = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / key.lstrip("+") / f"{option}.yaml"))
    assert isinstance(variant, dict)
    for entry in variant.pop("defaults", []):
        ((group, choice),) = entry.items()
        assert cfg.hydra.runtime.choices[group.removeprefix("override /")] == choice, (group, choice)
    for path, value in _leaves(variant):
        selected = OmegaConf.select(cfg, path)
        assert (OmegaConf.to_container(selected) if OmegaConf.is_config(selected) else selected) == value, path
    # The recipe's own values must suit the variant's choices (no SGD momentum reaching an Adam).
    assert isinstance(instantiate(cfg.optim)([nn.Parameter(torch.zeros(1))]), torch.optim.Optimizer)
    assert isinstance(instantiate(cfg.loss), nn.Module)


def test_loss_and_optimizer_variants_couple_their_settings(make_cfg) -> None:
    bce = make_cfg("+experiment=loss_sweep", "variant/loss=bce")
    assert bce.loss._target_.endswith("OneHotBCEWithLogitsLoss") and bce.optim._target_ == "torch.optim.Adam"
    assert (bce.optim.lr, bce.optim.weight_decay) == (1e-4, 5e-4)
    ce = make_cfg("+experiment=loss_sweep", "variant/loss=ce")
    assert ce.loss._target_ == "torch.nn.CrossEntropyLoss" and ce.optim._target_ == "torch.optim.SGD"
    plain = make_cfg("+experiment=optimizer_sweep", "variant/optimizer=sgd")
    assert plain.optim._target_ == "torch.optim.SGD" and plain.optim.momentum == 0.0
    assert make_cfg("+experiment=optimizer_sweep", "variant/optimizer=adadelta").optim.lr == 1.0


# The stride study runs every arm twice (repeats=2, its default is 3): the report's statistics and
# arm names are checked on it; every other study once.
SMOKE_REPEATS = {"stride_sweep": 2}
STRIDE_ARMS = [  # the declared order, the baseline first
    ("pool strides 2-2-2, dropout 0.5/0.5 (original)", "2-2-2", "0.5/0.5", "no"),
    ("pool strides 3-3-3, dropout 0.5/0.5", "3-3-3", "0.5/0.5", "no"),
    ("pool strides 3-3-2, dropout 0.4/0.3", "3-3-2", "0.4/0.3", "no"),
    ("pool strides 3-2-2, dropout 0.4/0.3", "3-2-2", "0.4/0.3", "no"),
    ("pool strides 3-3-2, DropConnect 0.4/0.3", "3-3-2", "0.4/0.3", "yes"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in EXPERIMENTS if name not in TRANSFER_EXPERIMENTS])
def test_every_experiment_runs_as_a_smoke_multirun_with_a_report(monkeypatch, tmp_path: Path, name: str) -> None:
    repeats = SMOKE_REPEATS.get(name, 1)
    sweep = multirun_in_process(monkeypatch, tmp_path, f"+experiment={name}", *SMOKE, f"repeats={repeats}")
    assert sweep.parent.parent.name == name
    with (sweep / "jobs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == JOBS[name] * repeats
    assert all(row["status"] == "ok" for row in rows), [row["status"] for row in rows]
    with (sweep / "report.csv").open() as handle:
        arms = list(csv.DictReader(handle))
    assert len(arms) == JOBS[name] and all(int(arm["runs"]) == repeats for arm in arms)
    for figure in ("curves.png", "bars.png"):
        with Image.open(sweep / figure) as image:
            image.verify()
    if name == "depth_grid":
        with Image.open(sweep / "heatmap.png") as image:
            image.verify()
        assert {(row["model.conv_depth"], row["model.fc_depth"]) for row in rows} == {
            (str(c), str(f)) for c in range(1, 6) for f in range(1, 4)
        }
        assert (arms[0]["conv layers"], arms[0]["FC layers"]) == ("5", "3")  # the declared baseline
    if name == "stride_sweep":
        assert [(a["arm"], a["pool strides"], a["dropout"], a["DropConnect"]) for a in arms] == STRIDE_ARMS
        assert [row["seed"] for row in rows] == ["42"] * 5 + ["43"] * 5  # every arm once, then again
        assert arms[0]["verdict"] == "baseline" and all(a["p_holm"] for a in arms[1:])
    report = (sweep / "report.md").read_text()
    assert "| job |" in report and "**Question:**" in report and "**Baseline:**" in report
    assert "is not an arm of this sweep" not in report  # the declared baseline is found (model.batchnorm=False)
    assert ("**Verdicts**" if repeats > 1 else "**No verdict is possible:**") in report
    assert report.count("data:image/png;base64,") == 0
    assert (sweep / "report.html").read_text().count("data:image/png;base64,") >= 2


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """A 3-job sweep whose middle job fails (an unknown activation)."""
    cwd = tmp_path_factory.mktemp("failing")
    tiny = [o for o in SMOKE if not o.startswith(("model.", "data.num_classes"))]
    return multirun(cwd, *tiny, "model=convnet", "model.input_size=32", "model.activation=relu,swish,tanh")


def test_a_failed_job_does_not_stop_the_sweep_and_is_reported(failing_sweep) -> None:
    result, sweep = failing_sweep
    assert result.returncode == 1
    assert "1 of 3 sweep jobs did not finish ok" in result.stderr and "report.md" in result.stderr
    rows = {row["job"]: row for row in csv.DictReader((sweep / "jobs.csv").open())}
    assert rows["0"]["status"] == rows["2"]["status"] == "ok"
    assert rows["1"]["status"].startswith("failed: ConfigError: model.activation='swish'")
    assert float(rows["2"]["test_acc"]) >= 0  # the job after the failure ran


def test_each_job_logs_hparams_to_tensorboard(failing_sweep) -> None:
    _, sweep = failing_sweep
    # The whole folder: a run writes several event files (fit, test), in no fixed glob order.
    accumulator = EventAccumulator(str(sweep / "0" / "tensorboard"))
    accumulator.Reload()
    assert "_hparams_/session_start_info" in accumulator.PluginTagToContent("hparams")
    assert {"hparams/best_val_acc", "hparams/test_acc"} <= set(accumulator.Tags()["scalars"])


def test_the_report_command_rewrites_a_copied_sweep_dir(failing_sweep, tmp_path: Path, capsys) -> None:
    _, sweep = failing_sweep
    copy = tmp_path / "copied"
    shutil.copytree(sweep, copy)
    for name in ("report.csv", "report.md", "curves.png", "bars.png"):
        (copy / name).unlink()
    assert report_main([str(copy)]) == 1  # a job failed
    assert "3 jobs, 2 ok" in capsys.readouterr().out
    assert (copy / "report.md").is_file() and (copy / "curves.png").is_file()
    assert report_main([str(tmp_path / "missing")]) == 2


def test_a_partial_sweep_reports_jobs_without_metrics(failing_sweep, tmp_path: Path) -> None:
    _, sweep = failing_sweep
    copy = tmp_path / "partial"
    shutil.copytree(sweep, copy)
    (copy / "2" / "metrics.json").unlink()  # killed before it wrote anything
    rows = collect(copy).rows()
    assert rows[2]["status"].startswith("failed: no metrics.json")
    write_report(copy)
    statuses = [row["status"] for row in csv.DictReader((copy / "jobs.csv").open())]
    assert [status.startswith("failed") for status in statuses] == [False, True, True]


def test_a_search_with_five_settings_per_trial_still_gets_its_bar_chart(tmp_path: Path) -> None:
    settings = ["optim.lr=0.00123456", "optim.weight_decay=0.000123", "model.dropout=0.35", "data.batch_size=64",
                "sched.scheduler.step_size=12"]  # fmt: skip
    for number in range(12):
        make_job(tmp_path, number, [*settings[:-1], f"sched.scheduler.step_size={number}"], best_val_acc=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when the labels leave the bars no width
        write_report(tmp_path)
    assert (tmp_path / "bars.png").is_file()
    wrapped = plots.wrap_label(", ".join(settings))
    assert wrapped.replace("\n", ", ") == ", ".join(settings)
    assert max(len(line) for line in wrapped.splitlines()) <= 36


@pytest.mark.slow
def test_parallel_launcher_runs_jobs_at_once_each_in_its_own_dir(tmp_path: Path) -> None:
    tiny = [o for o in SMOKE if not o.startswith(("model.", "data.num_classes"))]
    result, sweep = multirun(
        tmp_path, *tiny, "model=convnet", "model.input_size=32", "model.activation=relu,tanh",
        "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job in jobs:
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["status"] == "ok"
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and sweep not in p.parents and "data" not in p.parts]
    assert outside == [], outside  # nothing written outside the sweep dir (datasets aside)
