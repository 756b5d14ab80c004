"""Every config composes and instantiates; conf/ is found in a checkout and in an installed wheel."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alexnet_study.config import compose
from alexnet_study.config.compose import auto_precision, cpu_has_bf16
from alexnet_study.config.presets import config_dir
from alexnet_study.models import AlexNet
from alexnet_study.training.run import build_module

from ..conftest import REPO_ROOT

CONF = REPO_ROOT / "conf"
# Groups in the defaults list: experiment and hparams_search are added with +, variant/ holds one nested
# group per study and scale/ one option per size (both used by the experiments: tests/config/test_scale.py),
# laptop/ the studies' laptop sizes; hydra is Hydra's.
NOT_GROUPS = ("hydra", "experiment", "variant", "hparams_search", "scale", "laptop")
GROUPS = sorted(d.name for d in CONF.iterdir() if d.is_dir() and d.name not in NOT_GROUPS)
# Config groups whose options need a value here: image_folder counts the class folders of a data.root
# that the tests' empty data dir lacks.
REQUIRED = {("data", "image_folder"): ["data.num_classes=10"]}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


ALL_OPTIONS = [(group, name) for group in GROUPS for name in options(group)]


def test_every_group_has_options() -> None:
    assert {"data", "model", "aug", "optim", "sched", "loss", "trainer", "logger", "callbacks", "paths"} <= set(GROUPS)
    assert all(options(group) for group in GROUPS)


@pytest.mark.parametrize(("group", "name"), ALL_OPTIONS, ids=[f"{g}={n}" for g, n in ALL_OPTIONS])
def test_every_config_composes_and_resolves(make_cfg, group: str, name: str) -> None:
    cfg = make_cfg(f"{group}={name}", *REQUIRED.get((group, name), []))
    assert cfg[group] is not None
    # Every interpolation resolves (a typo in ${...} fails here, not mid-run).
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("name", options("model"))
def test_every_model_preset_builds_with_every_group_default(make_cfg, name: str) -> None:
    cfg = make_cfg(f"model={name}")
    with torch.device("meta"):
        module = build_module(cfg)
    net = module.net
    assert (net.spec.name if isinstance(net, AlexNet) else cfg.model.arch) == name


@pytest.mark.parametrize("group", ["optim", "loss", "aug"])
def test_every_optimizer_loss_and_augmentation_instantiates(make_cfg, group: str) -> None:
    for name in options(group):
        cfg = make_cfg(f"{group}={name}")
        obj = instantiate(cfg[group])
        if group == "optim":
            assert isinstance(obj([torch.nn.Parameter(torch.zeros(1))]), torch.optim.Optimizer)
        else:
            assert obj is not None


def test_every_data_preset_instantiates_without_reading_data(make_cfg) -> None:
    for name in options("data"):
        cfg = make_cfg(f"data={name}", *REQUIRED.get(("data", name), []))
        datamodule = instantiate(cfg.data)
        assert datamodule.num_classes == cfg.data.num_classes
        assert datamodule.transform.output_size == cfg.model.input_size


def test_trainer_presets(make_cfg) -> None:
    assert make_cfg("trainer=cpu").trainer.precision == "32-true"
    assert make_cfg("trainer=gpu").trainer.precision == "bf16-mixed"
    smoke = make_cfg("trainer=smoke").trainer
    assert smoke.max_epochs == 1 and smoke.limit_train_batches == 2
    # The default follows the machine: bf16-mixed on a GPU, and on a CPU with bf16 instructions.
    expected = auto_precision("auto")
    assert make_cfg().trainer.precision == expected


@pytest.mark.parametrize(("has_bf16", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_the_cpu_trains_in_bf16_only_where_it_has_bf16_instructions(
    monkeypatch: pytest.MonkeyPatch, has_bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(compose, "cpu_has_bf16", lambda: has_bf16)
    monkeypatch.setattr(compose, "uses_cuda", lambda accelerator="auto": False)
    assert auto_precision("auto") == auto_precision("cpu") == expected
    assert auto_precision("mps") == "32-true"


def test_cpu_bf16_instructions_are_read_from_the_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512vl\n")
    assert cpu_has_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16x avx512vl\n")
    assert not cpu_has_bf16(cpuinfo)
    assert not cpu_has_bf16(tmp_path / "absent")


def test_outputs_live_under_the_run_dir(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg()
    run_dir = str(tmp_path / "run")
    assert cfg.paths.output_dir == run_dir
    assert cfg.trainer.default_root_dir == run_dir
    assert cfg.logger.tensorboard.save_dir == run_dir
    assert all(cb.dirpath.startswith(run_dir) for cb in cfg.callbacks.values() if "dirpath" in cb)


def test_config_dir_in_a_source_checkout() -> None:
    assert config_dir() == CONF


def test_conf_ships_in_the_wheel_and_is_found_there(tmp_path: Path) -> None:
    """Build the wheel, unpack it as site-packages would hold it, and compose from its own conf/."""
    hatchling = pytest.importorskip("hatchling.builders.wheel")
    wheel = Path(
        next(hatchling.WheelBuilder(str(REPO_ROOT)).build(directory=str(tmp_path / "dist"), versions=["standard"]))
    )
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    shipped = {n.removeprefix("alexnet_study/conf/") for n in names if n.startswith("alexnet_study/conf/")}
    in_repo = {p.relative_to(CONF).as_posix() for p in CONF.rglob("*") if p.is_file()}
    assert shipped == in_repo
    # The Optuna sweeper, inside Hydra's plugin namespace (which must stay a namespace package).
    assert "hydra_plugins/alexnet_study_sweeper/optuna_sweeper.py" in names
    assert "hydra_plugins/__init__.py" not in names
    assert not any(n.startswith("alexnet_study/plugins/") for n in names)  # shipped once, where Hydra looks

    script = (
        "import alexnet_study, alexnet_study.config.compose as c;"
        "print(alexnet_study.__file__); print(c.config_dir());"
        "print(c.compose(['model=alexnet_2012', 'data=synthetic']).model.name);"
        "from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper;"
        "print(next(s for s in Plugins.instance().discover(Sweeper) if s.__name__ == 'OptunaStudySweeper').__module__);"
        "import hydra_plugins.alexnet_study_sweeper as p; print(p.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    package_file, conf, model, sweeper, plugin_file = out.stdout.split()
    assert Path(package_file).is_relative_to(tmp_path / "site")
    assert Path(conf) == tmp_path / "site" / "alexnet_study" / "conf"
    assert model == "alexnet_2012"
    assert sweeper == "hydra_plugins.alexnet_study_sweeper.optuna_sweeper"  # Hydra discovers it
    assert Path(plugin_file).is_relative_to(tmp_path / "site")


# -- the _target_ allowlist -------------------------------------------------------------------------------
def _code_loaders() -> list[object]:
    """Callables that import modules, unpickle files, load libraries or run commands or code."""
    import builtins
    import ctypes
    import importlib
    import pickle
    import runpy
    import subprocess as sp

    loaders: list[object] = [
        importlib.import_module, importlib.reload, builtins.__import__, builtins.open, builtins.exec,
        builtins.eval, builtins.compile, pickle.load, pickle.loads, pickle.Unpickler, ctypes.CDLL,
        ctypes.cdll.LoadLibrary, ctypes.PyDLL, os.system, os.popen, os.execv, os.execvp, os.spawnv,
        runpy.run_path, runpy.run_module, sp.run, sp.Popen, sp.call, sp.check_call, sp.check_output,
        sp.getoutput, torch.load, torch.jit.load, torch.hub.load, torch.ops.load_library, torch.ops.import_module,
        torch.utils.cpp_extension.load, torch.utils.cpp_extension.load_inline,
    ]  # fmt: skip
    return loaders


ALLOWED_MODULES = (
    "torch.optim", "torch.nn.modules.loss", "lightning.pytorch", "torchmetrics", "alexnet_study",
    "hydra._internal.core_plugins", "hydra_plugins", "logging", "colorlog",
)  # fmt: skip


def test_nothing_on_the_allowlist_can_load_code() -> None:
    import torch.utils.cpp_extension  # noqa: F401

    from alexnet_study.config.validate import ALLOWED_TARGETS, allowed_callables

    allowed = allowed_callables()
    assert set(ALLOWED_TARGETS) - {name for name, _ in allowed.values()} <= {"colorlog.ColoredFormatter"}
    loaders = {id(f) for f in _code_loaders()}
    for name, obj in allowed.values():
        assert id(obj) not in loaders, name
        assert isinstance(obj, type) or inspect.isfunction(obj), f"{name} is neither a class nor a function"
        assert obj.__module__.startswith(ALLOWED_MODULES), f"{name} comes from {obj.__module__}"
        assert not any(part.startswith("_") for part in name.split(".")[-1:]), name


def test_every_target_in_conf_is_on_the_allowlist() -> None:
    from alexnet_study.config.validate import target_problem

    targets = {
        line.split(":", 1)[1].strip()
        for path in CONF.rglob("*.yaml")
        for line in path.read_text().splitlines()
        if line.strip().startswith("_target_:")
    }
    assert len(targets) > 20
    assert {target: target_problem(target) for target in targets} == dict.fromkeys(targets)
