"""``run(cfg)``: build everything a config names, fit, test, and write ``metrics.json``."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf

from alexnet_study.cluster.distributed import launched_as_rank_zero, parallel_job_devices
from alexnet_study.cluster.requeue import SubmititRequeue, slurm_environment
from alexnet_study.config.compose import run_seed, uses_cuda
from alexnet_study.config.validate import validate_config
from alexnet_study.data.base import DeviceDataModule
from alexnet_study.errors import ConfigError, DivergenceError, StudyError, WriteError, first_line, no_space, space_left
from alexnet_study.models.builder import count_parameters
from alexnet_study.training.callbacks.checkpointing import AtomicCheckpointIO, ResumeState, resume_checkpoint
from alexnet_study.training.callbacks.provenance import Provenance, RecordDataset, device_name, now, write_atomically
from alexnet_study.training.callbacks.recorder import EpochRecorder, LogEveryEpoch
from alexnet_study.training.module import ImageClassifier
from alexnet_study.training.records import METRICS_FILE, attempt_path, finished_metrics, kept_note

log = logging.getLogger(__name__)


def instantiate(config: Any, *args: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets a user error from the target surface as itself.

    Hydra wraps whatever a target raises in an ``InstantiationException``; a :class:`StudyError`
    already says exactly what to change, so it is re-raised unwrapped.
    """
    try:
        return hydra_instantiate(config, *args, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, StudyError):
            raise err.__cause__ from None
        raise


def build_views(cfg: DictConfig) -> list[L.Callback]:
    """The analysis= group's views of what the network learned; ``analysis=none`` has none, and takes no keys."""
    analysis = cfg.get("analysis")
    if not analysis:
        return []
    if "_target_" not in analysis:
        name = next(iter(analysis))
        raise ConfigError(
            f"analysis.{name}={analysis[name]!r}: analysis=none draws no views and takes no settings; "
            "accepted: analysis=default and its keys (conf/analysis/default.yaml)"
        )
    return [instantiate(analysis)]


def build_module(cfg: DictConfig) -> ImageClassifier:
    """The LightningModule for a config: network, loss, optimizer and schedule from their groups."""
    net = instantiate(cfg.model)
    scheduler = instantiate(cfg.sched.scheduler) if cfg.sched.get("scheduler") else None
    hparams = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(hparams, dict)
    hparams.pop("hydra", None)
    return ImageClassifier(
        net=net,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optim),
        num_classes=cfg.data.num_classes,
        scheduler=scheduler,
        scheduler_interval=cfg.sched.get("interval", "epoch"),
        scheduler_monitor=cfg.sched.get("monitor"),
        compile=cfg.get("compile", False),
        channels_last=cfg.get("channels_last", False),
        hparams=hparams,
        backbone_lr_scale=cfg.model.get("backbone_lr_scale"),
    )


def instantiate_entries(cfg: DictConfig, group: str) -> list[Any]:
    """Every non-null entry of a group of named objects (``callbacks``, ``logger``); each needs a ``_target_``:
    ``+callbacks.early_stoping.patience=3`` (a misspelt name) makes an entry without one."""
    entries = cfg.get(group) or {}
    for name, entry in entries.items():
        if entry is not None and (not isinstance(entry, DictConfig) or "_target_" not in entry):
            presets = sorted(k for k, v in entries.items() if isinstance(v, DictConfig) and "_target_" in v)
            raise ConfigError(
                f"{group}.{name}={entry!r}: no _target_: not one of this run's {group}; accepted: {', '.join(presets)}"
            )
    return [instantiate(entry) for entry in entries.values() if entry is not None]


def build_trainer(cfg: DictConfig, extra_callbacks: list[L.Callback] = ()) -> L.Trainer:
    """The Trainer: config callbacks and loggers, plus what every run needs to resume exactly
    (:class:`ResumeState`) and to write checkpoints atomically (:class:`AtomicCheckpointIO`); on
    SLURM, Lightning's auto-requeue off and submitit's requeue signal handled (``requeue.py``); with
    ``hydra/launcher=parallel`` and several GPUs, a GPU of its own for each job."""
    callbacks = instantiate_entries(cfg, "callbacks")
    loggers = instantiate_entries(cfg, "logger")
    extra: dict[str, Any] = {}
    on_gpu = uses_cuda(cfg.trainer.get("accelerator", "auto"))
    if cfg.trainer.get("deterministic") is True and on_gpu:
        # AlexNet's adaptive average pool and LRN (avg_pool3d) have no deterministic CUDA backward:
        # with true, torch raises at the first backward pass; "warn" keeps every deterministic
        # kernel there is and warns about the rest.
        log.warning(
            "trainer.deterministic=true on a GPU runs as 'warn': the adaptive average pool and LRN have no "
            "deterministic CUDA backward"
        )
        extra["deterministic"] = "warn"
    if HydraConfig.initialized() and on_gpu:
        hydra_cfg = HydraConfig.get()
        target, sweep_dir = str(hydra_cfg.launcher.get("_target_", "")), Path(str(hydra_cfg.sweep.dir))
        devices = parallel_job_devices(cfg.trainer, target, sweep_dir, torch.cuda.device_count())
        if devices is not None:
            extra["devices"] = devices
    return instantiate(
        cfg.trainer,
        callbacks=[*callbacks, ResumeState(), SubmititRequeue(), LogEveryEpoch(), *extra_callbacks],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO(), *slurm_environment()],
        **extra,
    )


@dataclass
class _Attempt:
    """One call of :func:`run`: what it has built so far, so that whatever exists when it fails is
    recorded, and where its record goes (``metrics.json``; beside it when a finished run is there)."""

    output_dir: Path
    earlier: dict[str, Any] | None  # the metrics of a run that finished ok in this dir
    metrics: dict[str, Any]
    target: Path | None
    started: float = field(default_factory=time.perf_counter)
    recorder: EpochRecorder = field(default_factory=EpochRecorder)
    trainer: L.Trainer | None = None
    datamodule: DeviceDataModule | None = None
    provenance: Provenance | None = None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and test as ``cfg`` says; return the metrics also written to ``metrics.json``.

    ``metrics.json`` is written even when the run fails, diverges or is interrupted (its
    ``status``: ok, failed, diverged, interrupted), so a sweep's report can show every job;
    ``provenance.json`` records what produced the run. With ``resume=auto`` a run whose
    directory holds ``checkpoints/last.ckpt`` continues from it.

    A run that finished ``ok`` keeps its record (``records.py``): an attempt in its directory
    that finds nothing left to train returns the metrics already there; one that fails writes
    ``<status>-<time>.json`` beside them instead of replacing them.
    """
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"status": "failed", "error": None, "seed": run_seed(cfg), "started_at": now()}
    attempt = _Attempt(output_dir, finished_metrics(output_dir), metrics, output_dir / METRICS_FILE)
    unwritten = None
    try:
        _train_and_test(cfg, attempt)
    except BaseException as err:
        failure = _record_failure(attempt, err)
        _stop_launched_processes(attempt.trainer)
        if failure is not err:
            raise failure from err
        raise
    finally:
        unwritten = _finish(cfg, attempt)
    if unwritten is not None:  # reached only when the run itself went well
        raise unwritten
    return attempt.metrics


def _train_and_test(cfg: DictConfig, a: _Attempt) -> None:
    """Check, build, fit and test; the results go into ``a.metrics``."""
    # Before anything is built, loaded or written: a bad config stops here, in milliseconds.
    validate_config(cfg)
    ckpt_path, warnings = resume_checkpoint(cfg.get("resume"), cfg.get("ckpt_path"), a.output_dir)
    if ckpt_path is not None:
        a.metrics["resumed_from"] = str(ckpt_path)
    if warnings:
        a.metrics["warnings"] = warnings
    # Under DDP every process runs this function; rank zero alone records the run.
    if launched_as_rank_zero():
        a.provenance = Provenance(a.output_dir, cfg, a.metrics["seed"])
    if a.metrics["seed"] is not None:
        L.seed_everything(a.metrics["seed"], workers=True)
    # The model first: a bad model config fails in milliseconds, before any data is read.
    module = build_module(cfg)
    total, trainable = count_parameters(module.net)
    a.metrics.update(params_total=total, params_trainable=trainable)
    log.info("model %s: %s parameters, %s trainable", cfg.model.get("name", "?"), f"{total:,}", f"{trainable:,}")
    a.datamodule = instantiate(cfg.data)
    # The analysis= group: views of what the network learned, drawn after testing (conf/analysis/).
    views = build_views(cfg)
    recorders = [a.recorder, *([RecordDataset(a.provenance)] if a.provenance else []), *views]
    a.trainer = trainer = build_trainer(cfg, recorders)
    a.metrics.update(device=_device_name(trainer), precision=str(trainer.precision))
    for lg in trainer.loggers:
        lg.log_metrics({"params/total": total, "params/trainable": trainable}, step=0)

    trainer.fit(module, datamodule=a.datamodule, ckpt_path=ckpt_path)
    if a.earlier is not None and ckpt_path is not None and a.recorder.batches_trained == 0:
        log.info("%s: nothing left to train; the finished run's metrics.json is kept", a.output_dir)
        a.metrics, a.target = a.earlier, None
        return
    a.metrics.update(_fit_metrics(trainer, module, a.recorder.history))
    if cfg.get("test", True) and "test" in a.datamodule.splits():
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        trainer.test(module, datamodule=a.datamodule, ckpt_path=best or None, weights_only=True)
        record_dir = a.output_dir if trainer.is_global_zero else None
        a.metrics.update(_test_metrics(trainer, module, a.datamodule.classes, record_dir))
        a.metrics["tested_checkpoint"] = best or "final weights"
    a.metrics["status"] = "ok"


def _record_failure(a: _Attempt, err: BaseException) -> BaseException:
    """Put ``err`` in ``a.metrics``; return the error to raise (a full disk named as such, else ``err``)."""
    failure = _disk_full(err, a.output_dir, a.trainer) or err
    a.metrics["error"] = f"{type(failure).__name__}: {first_line(failure, empty='')}"
    a.metrics["status"] = _status(err)
    if isinstance(err, DivergenceError):
        a.metrics["diverged_at"] = {"epoch": err.epoch, "step": err.step, "lr": err.lr}
    if a.earlier is not None:  # a finished run's record is not this attempt's to replace
        a.target = attempt_path(a.output_dir, a.metrics["status"])
        _add_to_message(failure, f"({kept_note(a.output_dir, a.target)})")
    return failure


def _finish(cfg: DictConfig, a: _Attempt) -> WriteError | None:
    """Complete and write the record (the primary process only); the error to raise if the
    metrics of a run that went well could not be written."""
    if a.target is not None:
        _complete(a.metrics, a.recorder, a.datamodule, a.started)
    primary = a.trainer.is_global_zero if a.trainer is not None else launched_as_rank_zero()
    if not primary:
        return None
    unwritten = _record(a.target, a.metrics, a.provenance)
    if a.trainer is not None:
        try:
            log_hparams(a.trainer, cfg, a.metrics)
        except Exception as err:  # TensorBoard on a full disk, say: never what a run reports
            log.warning("could not record the HParams in TensorBoard: %s", first_line(err))
    return unwritten


def _complete(
    metrics: dict[str, Any], recorder: EpochRecorder, datamodule: DeviceDataModule | None, started: float
) -> None:
    """Add the history, totals, data summary and timing to ``metrics``."""
    metrics.update(recorder.summary())
    metrics["history"] = recorder.history
    metrics["epochs_run"] = len(recorder.history)
    if datamodule is not None:
        metrics["data"] = datamodule.summary()
    if metrics.get("best_val_acc") is None:  # a run that stopped early: its best epoch so far
        accs = [r["val/acc"] for r in recorder.history if "val/acc" in r]
        metrics["best_val_acc"] = max(accs) if accs else None
    metrics["wall_time_s"] = time.perf_counter() - started
    metrics["finished_at"] = now()


def _record(target: Path | None, metrics: dict[str, Any], provenance: Provenance | None) -> WriteError | None:
    """Write ``metrics`` into ``target`` (``None``: a finished run's metrics.json, kept as it is) and
    finish ``provenance.json``. If even these cannot be written (a full disk), say so on stderr:
    the console is then the only record of the run. Returns the error to raise when a run that
    went well could not write its metrics (it then reports that as its one error line)."""
    unwritten = None
    if target is not None:
        try:
            write_metrics(target, metrics)
        except OSError as err:
            line = _unwritten_line(target, err)
            if metrics["status"] == "ok":  # results on record nowhere: the run fails, with this line
                metrics.update(status="failed", error=f"{WriteError.__name__}: {line}")
                unwritten = WriteError(line)
            else:  # the run's own error is the line it reports; this one goes beside it
                _say(line)
    if provenance is not None:
        kept = target is None or target.name != METRICS_FILE
        note = {"note": "nothing left to train; metrics.json kept"} if target is None else {}
        try:
            provenance.finish(
                metrics["status"],
                results=not kept,
                error=metrics.get("error") if target is not None else None,
                resumed_from=metrics.get("resumed_from"),
                **note,
            )
        except OSError as err:
            _say(_unwritten_line(provenance.path, err))
    return unwritten


def _unwritten_line(path: Path, err: OSError) -> str:
    return f"could not write {path}: {err.strerror or err} ({space_left(path.parent)} there)"


def _say(line: str) -> None:
    """On stderr, not through logging: the log file may be on the very disk that is full."""
    print(f"[alexnet_study][ERROR] - {line}", file=sys.stderr, flush=True)


def _disk_full(err: BaseException, output_dir: Path, trainer: L.Trainer | None) -> WriteError | None:
    """A :class:`WriteError` naming the file and the space left, for a full disk that surfaced as
    something other than a :class:`StudyError` (which already says so: checkpoints)."""
    full = no_space(err)
    if full is None or isinstance(err, StudyError):
        return None
    where = full.filename or _tensorboard_dir(full, trainer) or f"a file in {output_dir}"
    return WriteError(
        f"could not write {where}: {full.strerror or 'no space left on device'} ({space_left(output_dir)} there); "
        f"free disk space, then run the same command again (resume=auto continues from the last checkpoint)"
    )


def _tensorboard_dir(err: BaseException, trainer: L.Trainer | None) -> str | None:
    """The TensorBoard event folder, when ``err`` was raised by TensorBoard's writer (it names no file)."""
    frames = traceback.extract_tb(err.__traceback__) if err.__traceback__ else []
    if trainer is None or not any("tensorboard" in frame.filename for frame in frames):
        return None
    folders = [Path(lg.log_dir) for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
    return f"the TensorBoard events in {folders[0]}" if folders else None


def _add_to_message(err: BaseException, text: str) -> None:
    """Append ``text`` to a one-line :class:`StudyError` (which the entry point prints as the error line)."""
    if isinstance(err, StudyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        err.args = (f"{err.args[0]} {text}",)
    else:
        log.warning("%s", text.strip("()"))


def _stop_launched_processes(trainer: L.Trainer | None) -> None:
    """The processes Lightning's DDP launcher started for this run (``trainer=ddp``, rank zero only):
    after an error here they could wait for this process in a collective operation forever."""
    launcher = getattr(trainer.strategy, "launcher", None) if trainer is not None else None
    if isinstance(launcher, _SubprocessScriptLauncher) and launcher.procs:
        launcher.kill(signal.SIGKILL)


def _status(err: BaseException) -> str:
    if isinstance(err, DivergenceError):
        return "diverged"
    # Ctrl-C (Lightning turns it into SystemExit) and SIGTERM (Lightning's SIGTERMException, a SystemExit).
    if isinstance(err, KeyboardInterrupt | SystemExit):
        return "interrupted"
    return "failed"


HPARAM_METRICS = ("best_val_acc", "test_acc", "test_acc_top5", "train_loss", "train_time_s", "images_per_s")


def log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """Record this run's settings and final metrics in TensorBoard's HParams view, so that
    ``tensorboard --logdir <sweep dir>`` compares a sweep's jobs in one table."""
    params: dict[str, Any] = {
        "lr": cfg.optim.get("lr"),
        "weight_decay": cfg.optim.get("weight_decay"),
        "batch_size": cfg.data.get("batch_size"),
        "max_epochs": cfg.trainer.get("max_epochs"),
        "seed": metrics.get("seed"),
        "status": metrics.get("status"),
    }
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        params.update({f"choice/{group}": option for group, option in hydra_cfg.runtime.choices.items()
                       if option is not None and not group.startswith("hydra/")})  # fmt: skip
        params.update(dict(str(o).split("=", 1) for o in hydra_cfg.overrides.task if "=" in str(o)))
    values = {f"hparams/{key}": metrics[key] for key in HPARAM_METRICS if isinstance(metrics.get(key), int | float)}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams({k: v for k, v in params.items() if v is not None}, values)


def _fit_metrics(trainer: L.Trainer, module: ImageClassifier, history: list[dict[str, float]]) -> dict[str, Any]:
    """The fit's final metrics: this attempt's last values, else the last epoch on record (a run
    resumed with nothing left to train logs none, but its checkpoint holds the history)."""
    last = _scalars(trainer.callback_metrics)
    recorded = history[-1] if history else {}

    def final(logged: str, kept: str) -> float | None:
        value = last.get(logged)
        return recorded.get(kept) if value is None else value

    # The metric's state, not compute(): a resumed run that had nothing left to train never updates it.
    best = float(module.val_acc_best.max_value)
    return {
        "best_val_acc": best if math.isfinite(best) else None,
        "val_acc": final("val/acc", "val/acc"),
        "val_loss": final("val/loss", "val/loss"),
        "train_loss": final("train/loss_epoch", "train/loss"),
        "train_acc": final("train/acc", "train/acc"),
    }


def _test_metrics(
    trainer: L.Trainer, module: ImageClassifier, classes: list[str], output_dir: Path | None
) -> dict[str, Any]:
    """The test metrics (reduced over all processes); ``confusion_matrix.csv`` into ``output_dir`` if given."""
    last = _scalars(trainer.callback_metrics)
    report = module.test_report
    confusion = report.get("confusion_matrix")
    if confusion is not None and output_dir is not None:
        lines = [",".join(["true\\predicted", *classes])]
        lines += [",".join([name, *map(str, row)]) for name, row in zip(classes, confusion, strict=True)]
        (output_dir / "confusion_matrix.csv").write_text("\n".join(lines) + "\n")
    return {
        "test_acc": last.get("test/acc"),
        "test_acc_top5": last.get("test/acc_top5"),
        "test_loss": last.get("test/loss"),
        "per_class_acc": dict(zip(classes, report.get("per_class_acc", []), strict=True)),
    }


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if not (isinstance(v, torch.Tensor) and v.numel() != 1)}


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics.json`` atomically; NaN and infinities become ``null`` (valid JSON)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    write_atomically(path, json.dumps(clean(metrics), indent=2) + "\n")


def _device_name(trainer: L.Trainer) -> str:
    """The GPU's name, or just ``cpu`` (unlike ``provenance.json``, which names the CPU's architecture too)."""
    device = trainer.strategy.root_device
    return device_name(device) if device.type == "cuda" else device.type
