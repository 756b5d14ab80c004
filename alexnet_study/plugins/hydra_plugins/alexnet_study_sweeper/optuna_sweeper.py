"""An Optuna study as a Hydra sweeper: ``+hparams_search=optuna -m`` (conf/hydra/sweeper/optuna_study.yaml).

Ours, not the ``hydra-optuna-sweeper`` package: that plugin pins ``optuna<3``, whose SQLite storage
fails on SQLAlchemy 2 (and whose pins of SQLAlchemy and alembic below that conflict with current
releases), and it does not resume a stored study. This one runs current Optuna through the ask/tell
interface and launches each batch of trials with the configured Hydra launcher (basic, parallel, SLURM):

- the search space: ``search_space`` (Hydra's sweep syntax: ``interval(a,b)``, ``tag(log, interval(a,b))``,
  ``int(interval(a,b))``, ``choice(a,b)``, ``range(a,b)``) plus any sweep override on the command line;
  the rest of the command line is passed to every trial as it is;
- a trial is a sweep job in ``<sweep dir>/<trial number>``; its value is what the task function returns
  (``val/acc_best``); a job that returns nothing or a non-finite number (it failed or diverged) is told
  to the study as FAIL, and the study goes on;
- the study lives in ``storage`` (default: SQLite ``<sweep dir>/optuna.db``) under ``study_name``; run
  the same command with ``hydra.sweep.dir=<that dir>`` to resume it: ``n_trials`` is the study's total,
  so a resumed study runs the trials still missing (raise ``n_trials`` to add more); trials a killed
  sweep left running are marked failed;
- after every batch, ``optuna_study.yaml`` in the sweep dir records the best trial and every trial's
  number, state, value and parameters.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

STUDY_FILE = "optuna_study.yaml"
SAMPLERS = ("tpe", "random")


def distribution(override: Override) -> Any:
    """The Optuna distribution of a sweep override (``interval``, ``choice``, ``range``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, ChoiceSweep | RangeSweep):
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise HydraException(f"{override.input_line}: not a search dimension (use interval, choice or range)")


class OptunaStudySweeper(Sweeper):
    """Asks Optuna for ``n_jobs`` trials at a time, launches them as sweep jobs, tells it their values.

    Args:
        search_space: ``{key: sweep expression}``, searched in every trial.
        n_trials: trials the study should have in all (a resumed study runs the missing ones).
        n_jobs: trials launched at once (the launcher decides how they run: one after another with the
            basic launcher, side by side with ``hydra/launcher=parallel``, as SLURM jobs with ``slurm``).
        direction: ``maximize`` (``val/acc_best``) or ``minimize``.
        sampler: ``tpe`` or ``random``, seeded by ``seed`` (plus the trials already in the study, so a
            resumed study does not draw its first trials again).
        study_name, storage: where the study is kept; ``storage`` null: SQLite in the sweep dir.
        enqueue: settings tried first, e.g. ``[{optim.lr: 0.01}]`` (the recipe's own); values outside
            the search space are tried as given; skipped when the study already has them.
        params: the experiment's own sweep (``hydra.sweeper.params``): not searched, logged.
    """

    def __init__(
        self,
        search_space: Mapping[str, Any] | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        direction: str = "maximize",
        sampler: str = "tpe",
        seed: int | None = None,
        study_name: str = "study",
        storage: str | None = None,
        enqueue: Sequence[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if sampler not in SAMPLERS:
            raise HydraException(f"hydra.sweeper.sampler={sampler}: accepted: {', '.join(SAMPLERS)}")
        if direction not in ("maximize", "minimize"):
            raise HydraException(f"hydra.sweeper.direction={direction}: accepted: maximize, minimize")
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HydraException(f"hydra.sweeper.{key}={value}: must be an integer >= 1")
        self.search_space = {str(k): str(v) for k, v in (search_space or {}).items()}
        self.n_trials, self.n_jobs, self.direction = n_trials, n_jobs, direction
        self.sampler, self.seed, self.study_name, self.storage = sampler, seed, study_name, storage
        self.enqueue = [_plain(entry) for entry in enqueue or []]
        self.ignored_params = dict(params or {})
        # Every sweep's repeats (repeat=range(0,${repeats}), conf/hydra/default.yaml): a trial runs once.
        if str(self.ignored_params.pop("repeat", "range(0,1)")).replace(" ", "") != "range(0,1)":
            log.warning("repeats: a search runs each trial once (the study's sampler decides what to run again)")
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        import optuna

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        fixed, space = self._split(arguments)
        if self.ignored_params:
            log.info(
                "the experiment's own sweep (%s) is not searched: trials use the recipe's values; give a key on the "
                "command line as a sweep (key=a,b or key='interval(a,b)') to search it too",
                ", ".join(self.ignored_params),
            )

        optuna.logging.disable_default_handler()  # into Hydra's log (console and file) instead
        optuna.logging.enable_propagation()
        storage = self.storage or f"sqlite:///{sweep_dir / 'optuna.db'}"
        study = optuna.create_study(
            study_name=self.study_name, storage=storage, direction=self.direction, load_if_exists=True
        )
        if study.direction.name.lower() != self.direction:
            raise HydraException(
                f"hydra.sweeper.direction={self.direction}: the stored study {self.study_name} in {storage} "
                f"was created to {study.direction.name.lower()}"
            )
        self._fail_stale(study)
        stored = len(study.trials)
        study.sampler = self._sampler(stored)
        for entry in self.enqueue:
            study.enqueue_trial(entry, skip_if_exists=True)
        log.info(
            "Optuna study %s (%s): %d trials stored, %d to run; search space: %s",
            self.study_name, storage, stored, max(0, self.n_trials - stored), ", ".join(space) or "empty",
        )  # fmt: skip

        returns: list[Sequence[JobReturn]] = []
        while (missing := self.n_trials - len(study.trials)) > 0:
            with warnings.catch_warnings():
                # An enqueued value outside the search space is tried as given (documented above).
                warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")
                trials = [study.ask(space) for _ in range(min(self.n_jobs, missing))]
            batch = [[*fixed, *(f"{key}={_text(value)}" for key, value in t.params.items())] for t in trials]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, result in zip(trials, results, strict=True):
                value = _value(result)
                if value is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    log.warning("trial %d failed (see %s)", trial.number, sweep_dir / str(trial.number))
                else:
                    study.tell(trial, value)
            returns.append(results)
            write_summary(study, sweep_dir / STUDY_FILE)
        if not returns:  # nothing left to run (a resumed study that has its trials): the summary all the same
            write_summary(study, sweep_dir / STUDY_FILE)
        return returns

    def _split(self, arguments: list[str]) -> tuple[list[str], dict[str, Any]]:
        """(overrides every trial gets, the search space): sweep overrides on the command line join it."""
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space: dict[str, Any] = {}
        for override in parser.parse_overrides([f"{k}={v}" for k, v in self.search_space.items()]):
            space[override.get_key_element()] = distribution(override)
        fixed = []
        for override in parser.parse_overrides(arguments):
            if override.is_sweep_override():
                space[override.get_key_element()] = distribution(override)
            else:
                fixed.append(override.input_line)
        return fixed, space

    def _sampler(self, stored: int) -> Any:
        import optuna

        seed = None if self.seed is None else self.seed + stored
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    @staticmethod
    def _fail_stale(study: Any) -> None:
        """Trials a killed sweep left RUNNING never report: count them as failed."""
        import optuna

        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            log.warning("trial %d was left running by an earlier sweep; counted as failed", trial.number)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _value(result: JobReturn) -> float | None:
    """The job's return value if it is a finite number; ``None`` for a failed, diverged or crashed job."""
    if result.status != JobStatus.COMPLETED:
        log.error("job %s raised %r", result.overrides, result._return_value)
        return None
    value = result.return_value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _text(value: Any) -> str:
    """A parameter as an override value (floats in full precision; strings as Hydra reads them)."""
    return repr(value) if isinstance(value, float) else str(value)


def _plain(entry: Any) -> dict[str, Any]:
    container = OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else entry
    return {str(k): v for k, v in dict(container).items()}


def write_summary(study: Any, path: Path) -> None:
    """``optuna_study.yaml``: the best trial and every trial (number, state, value, parameters)."""
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params)} for t in study.trials
    ]
    summary: dict[str, Any] = {"study_name": study.study_name, "direction": study.direction.name.lower()}
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    if finished:
        best = study.best_trial
        summary["best"] = {"number": best.number, "value": best.value, "params": dict(best.params)}
    summary["trials"] = trials
    tmp = path.with_name(f".{path.name}.tmp")
    OmegaConf.save(OmegaConf.create(summary), tmp)
    tmp.replace(path)
