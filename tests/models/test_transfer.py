"""Transfer learning: ImageNet weights from a planted file (never the network), head replacement, layout checks,
freezing with exact parameter counts, frozen BatchNorm, per-group learning rates, and the transfer studies."""

from __future__ import annotations

import csv
import json
import pathlib
import re
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from alexnet_study.__main__ import main as entry_point
from alexnet_study.errors import ConfigError, DataError
from alexnet_study.models import count_parameters
from alexnet_study.models.freeze import head_path
from alexnet_study.models.pretrained import hub_checkpoints_dir, weights_file
from alexnet_study.report import write_report
from alexnet_study.training.run import build_module, build_trainer, instantiate, run

from ..conftest import SMOKE, make_job, multirun_in_process
from ..report.test_experiments import JOBS, TRANSFER_EXPERIMENTS
from .conftest import random_state_dict

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
RESNET50_FILE = "resnet50-11ad3fa6.pth"
# A small pretrained AlexNet run: synthetic data, a 67-pixel input, two training batches.
SMALL_RUN = [
    "model=alexnet", "model.input_size=67", "data=synthetic", "data.stored_size=32", "data.train_size=64",
    "data.val_size=32", "data.test_size=32", "data.batch_size=16", "trainer=smoke", "trainer.accelerator=cpu",
    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    "trainer.enable_model_summary=false", "~callbacks.progress_bar", "trainer.enable_progress_bar=false",
    "~callbacks.dataset_views", "sched=none",
]  # fmt: skip


def load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- Where the weights come from ------------------------------------------------------------------------


def test_weight_files_have_torchvisions_names_in_the_hub_cache(monkeypatch, tmp_path: Path) -> None:
    assert weights_file("alexnet").file_name == ALEXNET_FILE
    assert weights_file("vgg16").file_name == "vgg16-397923af.pth"
    assert weights_file("resnet50").file_name == RESNET50_FILE  # DEFAULT is IMAGENET1K_V2
    assert weights_file("resnet50", "IMAGENET1K_V1").file_name == "resnet50-0676ba61.pth"
    with pytest.raises(ConfigError, match=r"model.weights='V9': unknown for alexnet; accepted: DEFAULT, IMAGENET1K_V1"):
        weights_file("alexnet", "V9")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert hub_checkpoints_dir() == tmp_path / "hub" / "checkpoints"


def test_pretrained_alexnet_is_the_cached_file_except_its_new_head(make_cfg, torch_home: Path, downloads) -> None:
    net = instantiate(
        make_cfg("model=alexnet", "data=synthetic", "data.num_classes=101", "model.pretrained=true").model
    )
    assert downloads == []
    file = load(torch_home / "hub" / "checkpoints" / ALEXNET_FILE)
    state = net.state_dict()
    assert list(state) == list(file)  # torchvision's key layout
    assert [key for key in file if not torch.equal(state[key], file[key])] == [
        "classifier.6.weight",
        "classifier.6.bias",
    ]
    assert state["classifier.6.weight"].shape == (101, 4096) and state["classifier.6.bias"].shape == (101,)


def test_pretrained_resnet50_is_the_cached_file_except_fc(make_cfg, torch_home: Path, downloads) -> None:
    net = instantiate(make_cfg("model=resnet50", "data=synthetic", "model.pretrained=true").model)
    assert downloads == [] and isinstance(net, torchvision.models.ResNet)
    file = load(torch_home / "hub" / "checkpoints" / RESNET50_FILE)
    state = net.state_dict()
    assert [key for key in file if not torch.equal(state[key], file[key])] == ["fc.weight", "fc.bias"]
    assert (net.fc.in_features, net.fc.out_features) == (2048, 10)


def test_weights_path_is_read_instead_of_the_cache(make_cfg, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    path = tmp_path / "mine.pth"
    torch.save(random_state_dict("alexnet", seed=1), path)
    net = instantiate(
        make_cfg("model=alexnet", "data=synthetic", "model.pretrained=true", f"model.weights_path={path}").model
    )
    assert torch.equal(net.features[0].weight, load(path)["features.0.weight"])
    missing = make_cfg(
        "model=alexnet", "data=synthetic", "model.pretrained=true", f"model.weights_path={tmp_path}/no.pth"
    )
    with pytest.raises(ConfigError, match=r"model.weights_path='.*/no.pth': no such file"):
        instantiate(missing.model)
    with pytest.raises(ConfigError, match=r"model.weights_path=.* needs model.pretrained=true"):
        instantiate(make_cfg("model=alexnet", "data=synthetic", f"model.weights_path={path}").model)


class Payload:
    """Pickles as a call of ``Path.touch(marker)``: loading it with plain pickle would run that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return pathlib.Path.touch, (self.marker,)


def test_a_weight_file_with_a_pickle_payload_is_refused(make_cfg, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11), "extra": Payload(marker)}, path)
    cfg = make_cfg("model=alexnet", "data=synthetic", "model.pretrained=true", f"model.weights_path={path}")
    with pytest.raises(
        DataError, match=r"evil.pth': refused: torch.load\(weights_only=True\) found more than tensors"
    ) as error:
        instantiate(cfg.model)
    assert "(Unsupported global: GLOBAL " in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.exists()


def test_a_file_for_another_architecture_is_refused_naming_the_layer(make_cfg, torch_home: Path) -> None:
    resnet = torch_home / "hub" / "checkpoints" / RESNET50_FILE
    cfg = make_cfg("model=alexnet", "data=synthetic", "model.pretrained=true", f"model.weights_path={resnet}")
    with pytest.raises(DataError, match=re.escape("does not fit this model at conv1 (features.0.weight): missing")):
        instantiate(cfg.model)


@pytest.mark.parametrize(
    ("model", "file"),
    [("alexnet", ALEXNET_FILE), ("vgg16", "vgg16-397923af.pth"), ("resnet50", "resnet50-0676ba61.pth")],
)
def test_offline_without_a_cached_file_one_error_line_says_where_to_put_it(
    make_cfg, monkeypatch, tmp_path: Path, downloads, model: str, file: str
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    extra = ["model.weights=IMAGENET1K_V1"] if model == "resnet50" else []
    cfg = make_cfg(f"model={model}", "data=synthetic", "model.pretrained=true", *extra)
    with pytest.raises(DataError) as error, torch.device("meta"):
        instantiate(cfg.model)
    message = str(error.value)
    directory = tmp_path / "torch" / "hub" / "checkpoints"
    url = f"https://download.pytorch.org/models/{file}"
    assert downloads == [url]
    assert message.startswith(
        f"no {model} ImageNet weights: {file} is not in {directory} and downloading {url} failed (URLError: "
    )
    assert f"copy it into {directory}" in message and f"model.weights_path=/path/to/{file}" in message
    assert "\n" not in message


def test_offline_cli_run_fails_with_that_line_in_metrics_json(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    argv = ["alexnet_study", f"paths.root_dir={tmp_path}", "data=synthetic", "trainer=cpu", "model.pretrained=true"]
    monkeypatch.setattr(sys, "argv", argv)
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as exit_status:
            entry_point()
    finally:
        GlobalHydra.instance().clear()
    assert exit_status.value.code == 2
    metrics = json.loads(next(tmp_path.glob("outputs/train/runs/*/metrics.json")).read_text())
    assert metrics["status"] == "failed"
    assert metrics["error"].startswith(f"DataError: no alexnet ImageNet weights: {ALEXNET_FILE} is not in ")


# --- The layout must be the weights' ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "first"),
    [
        (
            ["model=alexnet_2012"],
            "first at conv1 (features.0): Conv2d(3, 96, kernel_size=(11, 11), stride=(4, 4)) at features.0 in this "
            "model, Conv2d(3, 64, kernel_size=(11, 11), stride=(4, 4), padding=(2, 2)) at features.0 in torchvision's",
        ),
        (["model=alexnet", "model.conv_depth=4"], "first at pool4 (features.10): MaxPool2d("),
        (["model=alexnet", "model.hidden=[1024,1024]"], "first at fc6 (classifier.1): Linear(9216 -> 1024)"),
        (["model=alexnet", "model.activation=tanh"], "first at act1 (features.1): Tanh() at features.1"),
        (["model=alexnet_bn"], "first at conv1 (features.0)"),
    ],
)
def test_a_spec_unlike_the_weights_is_refused_naming_the_first_differing_layer(
    make_cfg, monkeypatch, tmp_path: Path, downloads, overrides: list[str], first: str
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached: the layout is checked before any file is read
    cfg = make_cfg(*overrides, "data=synthetic", "model.pretrained=true")
    with pytest.raises(ConfigError, match=r"^model.pretrained=true: model '\w+' differs from the layout") as error:
        instantiate(cfg.model)
    assert first in str(error.value) and "or model.pretrained=false" in str(error.value)
    assert downloads == []


def test_pretrained_weights_refuse_half_normalization(make_cfg, downloads) -> None:
    cfg = make_cfg("data=caltech101", "model.pretrained=true")
    with pytest.raises(
        ConfigError, match=r"data.normalize='half' with model.pretrained=true: .*data.normalize=imagenet"
    ):
        instantiate(cfg.model)
    assert downloads == []


# --- Freezing and parameter counts ---------------------------------------------------------------------------


COUNTS_101 = [
    ("alexnet", "none", 57_417_637, 57_417_637),
    ("alexnet", "features", 57_417_637, 54_947_941),
    ("alexnet", "classifier", 57_417_637, 2_469_696),
    ("alexnet", "head", 57_417_637, 413_797),
    ("alexnet", "until:conv3", 57_417_637, 56_423_013),
    ("alexnet", "until:fc7", 57_417_637, 413_797),
    ("resnet50", "none", 23_714_981, 23_714_981),
    ("resnet50", "features", 23_714_981, 206_949),
    ("resnet50", "head", 23_714_981, 206_949),
    ("resnet50", "classifier", 23_714_981, 23_508_032),
    ("resnet50", "until:layer3", 23_714_981, 15_171_685),
    ("vgg16", "none", 134_674_341, 134_674_341),
    ("vgg16", "features", 134_674_341, 119_959_653),
    ("vgg16", "classifier", 134_674_341, 14_714_688),
    ("vgg16", "head", 134_674_341, 413_797),
    ("vgg16", "until:conv4_3", 134_674_341, 127_039_077),
]


@pytest.mark.parametrize(("model", "freeze", "total", "trainable"), COUNTS_101)
def test_parameter_counts_with_101_classes(make_cfg, model: str, freeze: str, total: int, trainable: int) -> None:
    cfg = make_cfg(f"model={model}", "data=synthetic", "data.num_classes=101", f"model.freeze={freeze}")
    with torch.device("meta"):
        net = instantiate(cfg.model)
    assert count_parameters(net) == (total, trainable)


@pytest.mark.parametrize(
    ("freeze", "message"),
    [
        ("all", r"model.freeze='all': unknown; accepted: none, features, classifier, head, until:<layer>"),
        ("until:conv9", r"model.freeze='until:conv9': no layer 'conv9' in this model; accepted: conv1, act1, pool1, "),
        ("until:fc8", r"model.freeze='until:fc8' freezes every layer: nothing would train"),
    ],
)
def test_a_bad_freeze_value_says_what_is_accepted(make_cfg, freeze: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message), torch.device("meta"):
        instantiate(make_cfg("model=alexnet", "data=synthetic", f"model.freeze={freeze}").model)


def test_a_pretrained_run_with_frozen_features_trains_only_the_classifier(make_cfg, torch_home: Path) -> None:
    cfg = make_cfg(
        *SMALL_RUN, "data.num_classes=101", "model.pretrained=true", "model.freeze=features", "optim.lr=0.01"
    )
    metrics = run(cfg)
    assert metrics["status"] == "ok"
    assert (metrics["params_total"], metrics["params_trainable"]) == (57_417_637, 54_947_941)
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert (written["params_total"], written["params_trainable"]) == (57_417_637, 54_947_941)
    file = load(torch_home / "hub" / "checkpoints" / ALEXNET_FILE)
    trained = load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")["state_dict"]
    features = [key for key in file if key.startswith("features.")]
    assert all(torch.equal(trained[f"net.{key}"], file[key]) for key in features)  # frozen: the file's
    assert not torch.equal(trained["net.classifier.1.weight"], file["classifier.1.weight"])  # fc6 trained
    assert trained["net.classifier.6.weight"].shape == (101, 4096)
    # The run's best checkpoint is a weight file too: its network weights, the head replaced again.
    best = next((Path(cfg.paths.output_dir) / "checkpoints").glob("best-*.ckpt"))
    again = instantiate(
        make_cfg("model=alexnet", "data=synthetic", "model.pretrained=true", f"model.weights_path={best}").model
    )
    assert torch.equal(again.classifier[1].weight, trained["net.classifier.1.weight"])
    assert again.classifier[6].out_features == 10


def test_frozen_batchnorm_keeps_its_running_statistics(make_cfg) -> None:
    cfg = make_cfg("model.batchnorm=true", "model.freeze=until:act1", "sched=none", tiny=True)
    module = build_module(cfg)
    paths = module.net.layer_paths
    before = {key: value.clone() for key, value in module.net.state_dict().items()}
    build_trainer(cfg).fit(module, datamodule=instantiate(cfg.data))
    after = module.net.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    frozen = {key for key in before if key.startswith((f"{paths['conv1']}.", f"{paths['bn1']}."))}
    assert f"{paths['bn1']}.running_mean" in frozen and not frozen & changed
    bn2 = paths["bn2"]
    assert {f"{paths['conv2']}.weight", f"{bn2}.weight", f"{bn2}.running_mean", f"{bn2}.running_var"} <= changed


# --- Per-group learning rate ----------------------------------------------------------------------------------


def test_backbone_lr_scale_makes_a_head_group_and_a_slower_backbone_group(make_cfg) -> None:
    module = build_module(make_cfg("model.backbone_lr_scale=0.1", "optim.lr=0.05", "sched=none", tiny=True))
    head, backbone = module.configure_optimizers().param_groups
    assert (head["name"], backbone["name"]) == ("head", "backbone")
    assert head["lr"] == pytest.approx(0.05) and backbone["lr"] == pytest.approx(0.005)
    head_params = module.net.get_submodule(head_path(module.net)).parameters()
    assert {id(p) for p in head["params"]} == {id(p) for p in head_params}
    assert len(head["params"]) + len(backbone["params"]) == len(list(module.parameters()))
    only_head = build_module(make_cfg("model.backbone_lr_scale=0.1", "model.freeze=head", "sched=none", tiny=True))
    assert [group["name"] for group in only_head.configure_optimizers().param_groups] == ["head"]
    with pytest.raises(ConfigError, match=r"model.backbone_lr_scale=0: must be a number > 0"):
        build_module(make_cfg("model.backbone_lr_scale=0", tiny=True))


def test_one_cycle_keeps_the_backbone_scale(make_cfg) -> None:
    cfg = make_cfg("model.backbone_lr_scale=0.1", "sched=onecycle", "trainer.max_epochs=1", tiny=True)
    module = build_module(cfg)
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=instantiate(cfg.data))
    head, backbone = trainer.optimizers[0].param_groups
    assert backbone["lr"] == pytest.approx(0.1 * head["lr"]) and head["max_lr"] == pytest.approx(cfg.optim.lr)


# --- The transfer studies ---------------------------------------------------------------------------------------


RECIPES = {
    # study arm: (model, pretrained, optimizer, lr, batch size, epochs)
    "cifar100_transfer variant/cifar100_transfer=pretrained": ("alexnet", True, "SGD", 3e-4, 64, 5),
    "cifar100_transfer variant/cifar100_transfer=scratch": ("alexnet", False, "Adam", 3e-4, 64, 10),
    "freeze_sweep": ("alexnet", True, "SGD", 1e-3, 256, 30),
    "transfer_vs_scratch variant/transfer_vs_scratch=scratch": ("alexnet", False, "SGD", 1e-2, 256, 30),
    "arch_compare variant/arch=resnet50": ("resnet50", True, "SGD", 1e-3, 64, 30),
    "arch_compare variant/arch=vgg16": ("vgg16", True, "SGD", 1e-3, 32, 30),
    "hymenoptera_finetune": ("alexnet", True, "SGD", 1e-3, 32, 25),
}


@pytest.mark.parametrize("arm", RECIPES)
def test_transfer_recipes(make_cfg, arm: str) -> None:
    model, pretrained, optimizer, lr, batch, epochs = RECIPES[arm]
    experiment, *variant = arm.split()
    cfg = make_cfg(f"+experiment={experiment}", *variant)
    assert (cfg.model.name, cfg.model.pretrained, cfg.data.normalize) == (model, pretrained, "imagenet")
    assert cfg.optim._target_.endswith(optimizer) and cfg.optim.lr == pytest.approx(lr)
    assert (cfg.data.batch_size, cfg.trainer.max_epochs) == (batch, epochs)
    assert cfg.data.image_size == (227 if model == "alexnet" else 224)
    if optimizer == "SGD":
        assert cfg.optim.momentum == 0.9


def test_arch_compare_vgg16_builds_and_gets_its_trainer(make_cfg) -> None:
    # The smoke multirun below trains alexnet and resnet50; VGG-16 (138M parameters) is only built, on meta.
    cfg = make_cfg("+experiment=arch_compare", "variant/arch=vgg16", "model.pretrained=false", "trainer=cpu")
    with torch.device("meta"):
        module = build_module(cfg)
    assert isinstance(module.net, torchvision.models.VGG) and count_parameters(module.net)[0] == 134_674_341
    assert isinstance(module.net.classifier[6], nn.Linear) and module.net.classifier[6].out_features == 101
    assert build_trainer(cfg).max_epochs == 30


def test_the_report_has_per_class_accuracy_for_few_classes(tmp_path: Path) -> None:
    sweep = tmp_path / "few"
    # A class with no test images in a run has no accuracy there (None), and no part in its arm's mean.
    accuracies = {"none": [(0.9, 0.8), (0.7, 0.6)], "head": [(0.5, 0.4), (None, 0.2)]}
    number = 0
    for freeze, runs in accuracies.items():
        for seed, (ants, bees) in enumerate(runs):
            make_job(
                sweep, number, [f"model.freeze={freeze}", f"seed={seed}"], per_class_acc={"ants": ants, "bees": bees}
            )
            number += 1
    write_report(sweep)
    rows = list(csv.DictReader((sweep / "jobs.csv").open()))
    assert [(row["acc/ants"], row["acc/bees"]) for row in rows] == [
        ("0.9", "0.8"),
        ("0.7", "0.6"),
        ("0.5", "0.4"),
        ("", "0.2"),
    ]
    means = {row["frozen"]: row for row in csv.DictReader((sweep / "report.csv").open())}
    assert float(means["none"]["acc/ants"]) == pytest.approx(0.8)
    assert float(means["head"]["acc/ants"]) == pytest.approx(0.5)
    assert float(means["head"]["acc/bees"]) == pytest.approx(0.3)

    many = tmp_path / "many"
    make_job(many, 0, ["model.freeze=none"], per_class_acc={f"class_{i}": 0.5 for i in range(11)})
    write_report(many)
    assert not any(column.startswith("acc/") for column in next(csv.reader((many / "jobs.csv").open())))


# SMOKE with torchvision's FC widths (pretrained) and no callbacks: a checkpoint of a 57M-parameter net costs
# more than its smoke step (the checkpoint -> test path: test_a_pretrained_run_with_frozen_features_...).
TRANSFER_SMOKE = [o for o in SMOKE if not o.startswith(("model.hidden", "~callbacks."))]
TRANSFER_SMOKE += ["~callbacks", "++trainer.enable_checkpointing=false"]
SMOKE_EXTRA = {
    "cifar100_transfer": ["repeats=2"],  # two repeats of each arm are enough to check the averaging
    # vgg16 (138M parameters) is only built: test_arch_compare_vgg16_builds_and_gets_its_trainer. Batch 2 keeps
    # ResNet-50's CPU step short.
    "arch_compare": ["variant/arch=alexnet,resnet50", "data.batch_size=2"],
    "hymenoptera_finetune": ["data.num_classes=2"],  # two classes, as ants/bees: per-class columns in the report
}
SMOKE_JOBS = {**JOBS, "cifar100_transfer": 4, "arch_compare": 2}
FEATURES_PARAMS = 2_469_696  # AlexNet's convolutions


@pytest.mark.slow
@pytest.mark.parametrize("name", TRANSFER_EXPERIMENTS)
def test_each_transfer_study_runs_as_a_smoke_multirun(monkeypatch, tmp_path: Path, torch_home, downloads, name) -> None:
    sweep = multirun_in_process(
        monkeypatch, tmp_path, f"+experiment={name}", *TRANSFER_SMOKE, *SMOKE_EXTRA.get(name, [])
    )
    assert sweep.parent.parent.name == name and downloads == []
    rows = list(csv.DictReader((sweep / "jobs.csv").open()))
    assert len(rows) == SMOKE_JOBS[name]
    assert all(row["status"] == "ok" for row in rows), [row["status"] for row in rows]
    if name == "freeze_sweep":
        by_mode = {row["model.freeze"]: int(float(row["params_trainable"])) for row in rows}
        assert by_mode["classifier"] == FEATURES_PARAMS and by_mode["none"] - by_mode["features"] == FEATURES_PARAMS
    elif name == "cifar100_transfer":
        arms = list(csv.DictReader((sweep / "report.csv").open()))
        assert [(row["arm"], row["runs"]) for row in arms] == [
            ("from scratch (Adam, lr 3e-4, 10 epochs)", "2"),  # the baseline first
            ("ImageNet weights fine-tuned (SGD, lr 3e-4, 5 epochs)", "2"),
        ]
    elif name == "arch_compare":
        totals = {row["variant/arch"]: int(float(row["params_total"])) for row in rows}
        assert totals == {"alexnet": 57_044_810 + 7 * 4097, "resnet50": 23_508_032 + 17 * 2048 + 17}
    elif name == "hymenoptera_finetune":
        assert {"acc/class_0", "acc/class_1"} <= set(rows[0])
        assert {row["model.freeze"]: int(float(row["params_trainable"])) for row in rows}["head"] == 2 * 4097
