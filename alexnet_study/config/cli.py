"""The command line's first step: compose what Hydra is about to compose, and report problems in one line.

Hydra reports a bad override (``optim=foo``, ``optim.lrr=1``, a syntax error) with a multi-line
message and exit status 1, and it instantiates ``hydra.callbacks`` before any of our code runs.
:func:`check_command_line` composes the same config first (each job of a ``-m`` sweep), checks
every ``_target_`` against the allowlist, and raises :class:`ConfigError` with one line; the entry
point prints it and exits with status 2. Values (learning rate, layers, ...) are checked per run in
:func:`alexnet_study.training.run.run`, so one bad job of a sweep does not stop the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.errors import HydraException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from alexnet_study.cluster.distributed import check_launch
from alexnet_study.config.compose import _compose_as_command_line
from alexnet_study.config.presets import config_dir
from alexnet_study.config.validate import check_targets
from alexnet_study.errors import ConfigError

# Composing takes ~30 ms a job; beyond this many jobs Hydra's own pre-launch check takes over.
MAX_JOBS_CHECKED = 200
_NOISE = ("Set the environment variable HYDRA_FULL_ERROR", "full_key:", "object_type=", "See https://hydra.cc")


def check_command_line(argv: Sequence[str]) -> None:
    """Raise :class:`ConfigError` if Hydra would fail to compose ``argv`` or it names a forbidden target."""
    try:  # Hydra's own parser (internal, stable through 1.3): the same flags, the same overrides
        from hydra._internal.utils import get_args_parser
    except ImportError:  # another Hydra: leave every check to it and to run()
        return
    args = get_args_parser().parse_args(list(argv))
    if args.help or args.hydra_help or args.shell_completion or args.info or args.config_path or args.config_dir:
        return  # Hydra answers these itself; another config dir is not ours to compose
    overrides = list(args.overrides)
    parsed = _parse(overrides)
    _check_group_choices(parsed)
    jobs = _jobs(parsed, overrides) if args.multirun else [overrides]
    for job in jobs[:MAX_JOBS_CHECKED]:
        cfg = _compose(args.config_name or "config", job)
        check_targets(cfg)
        _check_launch(cfg, job, multirun=args.multirun)


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


def _compose(config_name: str, overrides: list[str]) -> Any:
    from hydra.core.global_hydra import GlobalHydra

    try:
        return _compose_as_command_line(config_name, overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None
    finally:
        GlobalHydra.instance().clear()
