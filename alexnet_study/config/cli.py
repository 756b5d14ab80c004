"""The command line's first step: compose what Hydra is about to compose, and report problems in one line.

Hydra reports a bad override (``optim=foo``, ``optim.lrr=1``, a syntax error) with a multi-line
message and exit status 1, and it instantiates ``hydra.callbacks`` before any of our code runs.
:func:`check_command_line` composes the same config first (each job of a ``-m`` sweep; with
``--config-path``/``--config-dir`` as Hydra will, whatever other flag is given), checks every
``_target_`` of it resolved against the allowlist, and raises :class:`ConfigError` with one line;
the entry point prints it and exits with status 2. ``--experimental-rerun`` (it unpickles a file)
is refused. Values (learning rate, layers, ...) are checked per run in
:func:`alexnet_study.training.run.run`, so one bad job of a sweep does not stop the others.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from hydra.errors import HydraException, OverrideParseException
from omegaconf import open_dict
from omegaconf.errors import OmegaConfBaseException

from alexnet_study.cluster.distributed import check_launch
from alexnet_study.config.compose import _compose_as_command_line, config_dir
from alexnet_study.config.validate import check_groups, check_targets
from alexnet_study.errors import ConfigError, check_int, quoted
from alexnet_study.training.records import refuse_over_finished_run

_NOISE = ("Set the environment variable HYDRA_FULL_ERROR", "full_key:", "object_type=", "See https://hydra.cc")


def check_command_line(argv: Sequence[str]) -> None:
    """Raise :class:`ConfigError` if Hydra would fail to compose ``argv`` or it names a forbidden target."""
    try:  # Hydra's own parser (internal, stable through 1.3): the same flags, the same overrides
        from hydra._internal.utils import get_args_parser
    except ImportError:  # another Hydra: leave every check to it and to run()
        return
    args = get_args_parser().parse_args(list(argv))
    if args.experimental_rerun is not None:
        raise ConfigError(
            f"--experimental-rerun {quoted(args.experimental_rerun)}: refused: it unpickles the file, and a pickle "
            "can run code; run the command again with the overrides in the run dir's .hydra/overrides.yaml"
        )
    if args.shell_completion:
        return  # its arguments are not overrides; it composes nothing it would instantiate
    if args.config_dir is not None and not os.path.isdir(args.config_dir):
        raise ConfigError(f"--config-dir {quoted(args.config_dir)}: no such directory")
    overrides = list(args.overrides)
    parsed = _parse(overrides)
    if args.config_path is None and args.config_dir is None:  # elsewhere, other presets
        _check_group_choices(parsed)
    jobs = _jobs(parsed, overrides) if args.multirun else [overrides]
    for number, job in enumerate(jobs):
        cfg = _compose(args, job, number)
        check_groups(cfg)
        _check_launch(cfg, job, multirun=args.multirun)  # first: its lines say more than "cannot be resolved"
        check_targets(cfg)
        # Before Hydra writes the job's .hydra/: a finished run in that dir is left as it was.
        if not args.multirun:
            refuse_over_finished_run(cfg, None)
        elif _numbers_jobs_in_order(cfg):
            refuse_over_finished_run(cfg, number)
        if args.multirun:  # the sweep expands it into repeat=0..repeats-1 before any job runs
            check_int("repeats", cfg.get("repeats"), 1, "(runs of every arm, seeds seed..seed+repeats-1)")


def _numbers_jobs_in_order(cfg: Any) -> bool:
    """Whether the sweeper runs the jobs of :func:`_jobs` as jobs 0, 1, ... (Hydra's basic sweeper);
    an Optuna study picks its own trials."""
    return str(cfg.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper")


def _check_launch(cfg: Any, overrides: list[str], *, multirun: bool) -> None:
    """DDP settings this launch cannot honour (:func:`check_launch`), and a multi-node run without a
    shared run dir: each node would otherwise name its own by the clock (``hydra.run.dir``)."""
    trainer = cfg.get("trainer")
    check_launch(trainer, multirun=multirun, launcher=cfg.hydra.get("launcher"))
    nodes = trainer.get("num_nodes", 1) if trainer is not None else 1
    shared_dir = any(o.startswith("hydra.run.dir=") for o in overrides)
    if not multirun and isinstance(nodes, int) and nodes > 1 and not shared_dir:
        raise ConfigError(
            f"trainer.num_nodes={nodes}: every node must write into the same run dir; give it on every node's "
            "command line: hydra.run.dir=/shared/path/my-run"
        )


def one_line(err: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line; causes follow in parentheses."""
    parts: list[str] = []
    current: BaseException | None = err
    while current is not None and len(parts) < 4:
        lines = [line.strip() for line in str(current).splitlines()]
        text = " ".join(line for line in lines if line and not line.startswith(_NOISE))
        if text and text not in parts:
            parts.append(text)
        current = current.__cause__
    if not parts:
        return type(err).__name__
    return parts[0] + "".join(f" ({part})" for part in parts[1:])


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as err:
            raise ConfigError(f"{text}: not a valid override ({one_line(err)})") from None
    return parsed


def group_options(group: str) -> list[str]:
    """The presets of a config group: ``conf/<group>/*.yaml`` (``_``-prefixed files are partials)."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))


def _check_group_choices(parsed: list[Any]) -> None:
    """``optim=foo`` (or ``optim=adam,foo`` in a sweep): a clear line listing the presets."""
    for override in parsed:
        group = override.key_or_group
        if override.is_delete() or group.startswith("hydra") or not (config_dir() / group).is_dir():
            continue
        if override.is_sweep_override():
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # glob(...) and ranges: Hydra expands and checks those
                continue
        else:
            values = [override.value()]
        accepted = group_options(group)
        for value in values:
            if isinstance(value, str) and value not in accepted:
                listed = ", ".join(accepted) or "none yet"
                raise ConfigError(f"{group}={value}: no such preset in conf/{group}/; accepted: {listed}")


def _jobs(parsed: list[Any], overrides: list[str]) -> list[list[str]]:
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # a sweep the basic sweeper cannot expand: check the rest, Hydra reports that one
        return [[o.input_line for o in parsed if not o.is_sweep_override()]]


def _compose(args: Any, overrides: list[str], number: int) -> Any:
    """Job ``number``'s config as Hydra will compose it, with ``HydraConfig`` set to it (so that
    ``${hydra:...}`` resolves as in the job); its output dir is the one Hydra will name."""
    from hydra.core.hydra_config import HydraConfig

    try:
        cfg = _compose_as_command_line(
            args.config_name or "config",
            overrides,
            config_path=args.config_path,
            extra_dir=args.config_dir,
            multirun=args.multirun,
        )
        with open_dict(cfg):
            cfg.hydra.job.num = number
            run_dir = cfg.hydra.sweep.dir + "/" + str(cfg.hydra.sweep.subdir) if args.multirun else cfg.hydra.run.dir
            cfg.hydra.runtime.output_dir = str(run_dir)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None
    HydraConfig.instance().set_config(cfg)
    return cfg
