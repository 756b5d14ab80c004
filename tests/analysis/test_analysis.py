"""The analysis views: each view's shapes and files, Grad-CAM against known answers, the callback
after a run's test, ``python -m alexnet_study.inspect`` and the sweep report's filters by arm."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import alexnet_study as ast
from alexnet_study.analysis import (
    ConvLayer,
    TrainedModel,
    ViewSettings,
    conv_layers,
    grad_cam,
    grad_cam_maps,
    sweep_filters_figure,
    write_views,
)
from alexnet_study.analysis.activations import activation_maps, strongest_channels
from alexnet_study.analysis.evaluation import Evaluation
from alexnet_study.analysis.filters import filter_tiles
from alexnet_study.analysis.layers import spread
from alexnet_study.analysis.views import FILES, sample
from alexnet_study.data import SyntheticDataModule
from alexnet_study.errors import ConfigError
from alexnet_study.inspect import EXPLAINED_FILE
from alexnet_study.inspect import main as inspect_main
from alexnet_study.models import build_alexnet
from alexnet_study.report import write_report

from ..conftest import REPO_ROOT, TINY, allow_targets

LAYERS = [
    {"out_channels": 8, "kernel_size": 3, "padding": 1, "pool": {"kernel_size": 2, "stride": 2}},
    {"out_channels": 16, "kernel_size": 3, "padding": 1},
]


def tiny_net(num_classes: int = 4, size: int = 16) -> nn.Module:
    return build_alexnet(name="tiny", input_size=size, num_classes=num_classes, layers=LAYERS, avgpool=None,
                         hidden=[16], dropout=[0.0])  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Networks this small run fastest on one thread, and on a busy machine two threads that spin
    # waiting for each other make a step 40 times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trained() -> TrainedModel:
    data = SyntheticDataModule(num_classes=4, image_size=16, stored_size=16, train_size=8, val_size=0, test_size=40,
                               val_fraction=0.0)  # fmt: skip
    data.setup()
    return TrainedModel.from_datamodule(tiny_net().eval(), data, torch.device("cpu"))


# -- each view -------------------------------------------------------------------------------


def test_conv_layers_are_named_as_the_study_names_them_and_read_after_the_activation() -> None:
    net = tiny_net()
    layers = conv_layers(net)
    assert [layer.name for layer in layers] == ["conv1", "conv2"]
    assert layers[0].output is net.get_submodule(net.layer_paths["act1"])
    assert spread(list(range(8)), 3) == [0, 4, 7] and spread(layers, 5) == layers  # first and last kept
    with pytest.raises(ConfigError, match="no conv layers"):
        conv_layers(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)))


def test_filter_tiles_are_each_scaled_to_their_own_range() -> None:
    weight = torch.randn(8, 3, 5, 5)
    weight[0] *= 100.0  # a strong filter does not wash out the others
    tiles = filter_tiles(weight)
    assert tiles.shape == (8, 5, 5, 3)
    assert all(tile.min() == 0.0 and tile.max() == pytest.approx(1.0) for tile in tiles)
    assert filter_tiles(torch.randn(4, 1, 3, 3)).shape == (4, 3, 3, 3)  # grayscale input: gray tiles


def test_activation_maps_and_strongest_channels(trained: TrainedModel) -> None:
    inputs = trained.inputs(trained.images.images[:2])
    maps = activation_maps(trained.net, inputs, conv_layers(trained.net))
    assert {name: tuple(m.shape) for name, m in maps.items()} == {"conv1": (2, 8, 16, 16), "conv2": (2, 16, 8, 8)}
    assert (maps["conv1"] >= 0).all()  # after the ReLU
    channel_means = maps["conv2"][0].mean(dim=(1, 2))
    assert strongest_channels(maps["conv2"][0], 3) == channel_means.argsort(descending=True)[:3].tolist()


def test_the_fixed_images_take_each_class_in_turn() -> None:
    labels = torch.tensor([2, 2, 0, 1, 0, 2, 1])
    assert sample(labels, 5).tolist() == [2, 3, 0, 4, 6]


def test_evaluation_keeps_the_most_confident_mistakes_and_counts_every_image() -> None:
    evaluation = Evaluation(num_classes=3, keep=2)
    logits = torch.tensor([[5.0, 0, 0], [0, 9.0, 0], [0, 0, 1.0], [0, 3.0, 0]])
    labels = torch.tensor([0, 0, 1, 2])  # right, wrong (very sure), wrong (unsure), wrong (sure)
    images = torch.arange(4.0).view(4, 1, 1, 1)
    evaluation.update(images[:2], logits[:2], labels[:2])
    evaluation.update(images[2:], logits[2:], labels[2:])
    assert evaluation.images_seen == 4
    assert evaluation.confusion_matrix() == [[1, 1, 0], [0, 0, 1], [0, 1, 0]]
    mistakes = evaluation.mistakes()
    assert [(int(m.image.item()), m.label, m.predicted) for m in mistakes] == [(1, 0, 1), (3, 2, 1)]
    assert mistakes[0].confidence > mistakes[1].confidence


def test_evaluations_of_two_shares_merge_into_the_evaluation_of_all() -> None:
    # Two processes under DDP each see a share of the test images; rank zero merges their states.
    logits = torch.tensor([[5.0, 0, 0], [0, 9.0, 0], [0, 0, 1.0], [0, 3.0, 0], [0, 0, 7.0]])
    labels = torch.tensor([0, 0, 1, 2, 1])
    images = torch.arange(5.0).view(5, 1, 1, 1)
    whole, first, second = (Evaluation(num_classes=3, keep=3) for _ in range(3))
    whole.update(images, logits, labels)
    first.update(images[::2], logits[::2], labels[::2])
    second.update(images[1::2], logits[1::2], labels[1::2])
    first.merge(second.state())
    assert first.images_seen == whole.images_seen == 5
    assert first.confusion_matrix() == whole.confusion_matrix()
    as_tuples = lambda e: [(int(m.image.item()), m.label, m.predicted, m.confidence) for m in e.mistakes()]  # noqa: E731
    assert as_tuples(first) == as_tuples(whole)
    assert [m[0] for m in as_tuples(whole)] == [1, 4, 3]  # the three surest mistakes, surest first


def test_every_view_is_written_as_a_png(trained: TrainedModel, tmp_path: Path) -> None:
    settings = ViewSettings(cam_images=3, activation_images=1, channels=4, mistakes=4)
    seconds = write_views(trained, tmp_path, settings)
    assert list(seconds) == list(FILES)
    for name in FILES.values():
        with Image.open(tmp_path / name) as image:
            assert image.size[0] > 200 and image.size[1] > 100, name
    assert json.loads((tmp_path / "timings.json").read_text())["seconds"] == seconds


def test_a_network_without_conv_layers_still_gets_its_mistakes_and_confusion(trained, tmp_path: Path) -> None:
    trained.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    assert list(write_views(trained, tmp_path)) == ["mistakes", "confusion"]


# -- Grad-CAM --------------------------------------------------------------------------------


def test_grad_cam_of_a_global_pool_network_is_its_class_activation_map() -> None:
    # conv -> ReLU -> global average pool -> linear: the class score's gradient with respect to each
    # map is its weight W[c, k] / (h w) everywhere, so Grad-CAM = ReLU(sum_k W[c, k] A_k) / (h w).
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(6, 3))  # fmt: skip
    images = torch.randn(4, 3, 8, 8)
    targets = torch.tensor([0, 1, 2, 1])
    maps, _ = grad_cam_maps(net, images, targets)
    activations = torch.relu(net[0](images))
    expected = torch.relu(torch.einsum("nk,nkhw->nhw", net[4].weight[targets], activations)) / 64
    torch.testing.assert_close(maps, expected.detach())


def _quadrant_batch(n: int, generator: torch.Generator, size: int = 32) -> tuple[torch.Tensor, ...]:
    """Noise images whose class (horizontal or vertical stripes) is drawn in one random quadrant."""
    half = size // 2
    images = torch.rand(n, 3, size, size, generator=generator) * 0.5
    labels = torch.randint(0, 2, (n,), generator=generator)
    quadrants = torch.randint(0, 4, (n,), generator=generator)
    stripes = torch.zeros(2, half, half)
    stripes[0, ::2, :] = 1.0
    stripes[1, :, ::2] = 1.0
    for i, (label, quadrant) in enumerate(zip(labels.tolist(), quadrants.tolist(), strict=True)):
        row, column = divmod(quadrant, 2)
        images[i, :, row * half : (row + 1) * half, column * half : (column + 1) * half] = stripes[label]
    return images, labels, quadrants


def test_grad_cam_puts_most_of_its_mass_on_the_quadrant_that_holds_the_class() -> None:
    torch.manual_seed(0)
    net = tiny_net(num_classes=2, size=32)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        images, labels, _ = _quadrant_batch(32, generator)
        loss = nn.functional.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    images, labels, quadrants = _quadrant_batch(64, generator)
    cams, probabilities = grad_cam(net, images)
    assert (probabilities.argmax(1) == labels).float().mean() > 0.9
    assert cams.shape == (64, 32, 32) and cams.min() >= 0 and cams.amax(dim=(1, 2)).max() == pytest.approx(1.0)
    share = torch.stack([
        cams[i, (q // 2) * 16 : (q // 2 + 1) * 16, (q % 2) * 16 : (q % 2 + 1) * 16].sum() / cams[i].sum()
        for i, q in enumerate(quadrants.tolist())
    ])  # fmt: skip
    assert share.mean() > 0.55  # a quarter by chance
    assert (share > 0.4).float().mean() > 0.8


def test_grad_cam_works_on_a_frozen_network_with_in_place_activations() -> None:
    net = tiny_net()
    net.requires_grad_(False)
    layer = conv_layers(net)[0]
    assert isinstance(layer, ConvLayer) and isinstance(layer.output, nn.ReLU) and layer.output.inplace
    cams, probabilities = grad_cam(net, torch.randn(2, 3, 16, 16), layer=layer)
    assert cams.shape == (2, 16, 16) and torch.isfinite(cams).all()
    torch.testing.assert_close(probabilities.sum(1), torch.ones(2))


# -- a finished run: the callback, inspect, the sweep report -----------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic smoke run with analysis=default (trainer=smoke alone turns it off)."""
    run_dir = tmp_path_factory.mktemp("analysis") / "run"
    overrides = [*TINY, "trainer=smoke", "trainer.accelerator=cpu", "analysis=default", "analysis.cam_images=4",
                 "~callbacks.dataset_views"]  # fmt: skip
    assert ast.fit(overrides, output_dir=run_dir).metrics["status"] == "ok"
    return run_dir


@pytest.mark.slow
def test_a_run_writes_every_view_and_logs_it_to_tensorboard(finished_run: Path) -> None:
    for name in FILES.values():
        assert (finished_run / "analysis" / name).is_file(), name
    tags = set()
    for events in (finished_run / "tensorboard").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["images"])
    assert {f"analysis/{name}" for name in FILES} <= tags


def test_the_smoke_trainer_turns_the_views_off_unless_asked(make_cfg) -> None:
    assert not make_cfg("trainer=smoke").analysis
    assert make_cfg("trainer=smoke", "analysis=full").analysis.cam_images == 24
    assert make_cfg().analysis.cam_images == 8


@pytest.mark.slow
def test_inspect_redraws_the_views_and_explains_a_users_image(finished_run: Path, tmp_path: Path, capsys) -> None:
    picture = tmp_path / "mine.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(picture)
    out = tmp_path / "views"
    assert inspect_main([str(finished_run), str(picture), "--out", str(out), "--max-images", "50"]) == 0
    printed = capsys.readouterr().out
    assert f"{picture}: class_" in printed and "top-5: " in printed
    assert {p.name for p in out.glob("*.png")} == {*FILES.values(), EXPLAINED_FILE}


@pytest.mark.slow
def test_inspect_errors_are_one_line_with_status_2(
    finished_run: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert inspect_main([str(finished_run), str(broken), "--no-views"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {broken}: unreadable image (UnidentifiedImageError: ")
    assert line.endswith("give a file PIL reads (JPEG, PNG, ...)")

    # A run whose model has no conv layers: its checkpoint's config names a plain linear model (the
    # checkpoint's config passes the allowlist like any other, so this test widens it).
    allow_targets(monkeypatch, "torch.nn.Flatten")
    no_convs = tmp_path / "linear_run"
    (no_convs / "checkpoints").mkdir(parents=True)
    checkpoint = torch.load(next((finished_run / "checkpoints").glob("best-*.ckpt")), weights_only=True)
    checkpoint["hyper_parameters"]["model"] = {"_target_": "torch.nn.Flatten"}
    checkpoint["state_dict"] = {}
    torch.save(checkpoint, no_convs / "checkpoints" / "best-epoch000-acc0.5000.ckpt")
    assert inspect_main([str(no_convs), "--no-views"]) == 2
    assert "has no conv layers (nn.Conv2d)" in capsys.readouterr().err

    # Through the command line: a run dir without a checkpoint.
    empty = tmp_path / "empty_run"
    empty.mkdir()
    result = subprocess.run([sys.executable, "-m", "alexnet_study.inspect", str(empty)], capture_output=True,
                            text=True, cwd=REPO_ROOT, timeout=300)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {empty}: no checkpoint in {empty / 'checkpoints'} (best-*.ckpt or last.ckpt); the views need the "
        "trained weights (runs keep them unless callbacks.best_checkpoint and callbacks.last_checkpoint were removed)"
    ]


@pytest.mark.slow
def test_the_sweep_report_lays_out_each_arms_filters(finished_run: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for number, lr in enumerate(["0.1", "0.01"]):
        job = sweep / str(number)
        shutil.copytree(finished_run, job)
        (job / ".hydra" / "overrides.yaml").write_text(f"- optim.lr={lr}\n")
        (job / "metrics.json").write_text(json.dumps({"status": "ok", "history": []}))  # not tested_checkpoint
    shutil.rmtree(sweep / "1" / "checkpoints")  # this arm falls back on its filters_conv1.png
    write_report(sweep)
    assert "![filters_by_arm.png](filters_by_arm.png)" in (sweep / "report.md").read_text()
    with Image.open(sweep / "filters_by_arm.png") as image:
        assert image.size[0] > 400
    assert sweep_filters_figure([tmp_path / "nothing"], ["none"]) is None
