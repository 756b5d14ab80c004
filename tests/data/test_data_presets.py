"""The data/ and aug/ config groups instantiate these classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from alexnet_study.config.validate import validate_config
from alexnet_study.data import (
    Augment,
    ImageFolderDataModule,
    SyntheticDataModule,
)
from alexnet_study.errors import ConfigError, DataError

from .conftest import CLASSES, framed_photos, normalized, random_images

# The data/ and aug/ config groups instantiate these classes
# ---------------------------------------------------------------------------------------------


def test_synthetic_preset_with_flip_crop(make_cfg) -> None:
    cfg = make_cfg("data=synthetic", "aug=flip_crop", "model.input_size=64")
    dm = instantiate(cfg.data)
    assert isinstance(dm, SyntheticDataModule)
    assert dm.transform.augment == Augment(hflip=0.5, random_crop=True, pad=0.125)
    assert dm.transform.output_size == 64 and dm.seed == cfg.seed


def test_aug_none_preset_is_identity(make_cfg) -> None:
    dm = instantiate(make_cfg("data=synthetic", "aug=none").data)
    augment = dm.transform.augment
    assert not augment.geometric and not augment.color


def test_random_resized_crop_from_the_command_line(make_cfg) -> None:
    cfg = make_cfg("data=synthetic", "data.stored_size=16", "model.input_size=16", "+aug.scale=[0.5,1.0]")
    dm = instantiate(cfg.data)
    assert tuple(dm.transform.augment.scale) == (0.5, 1.0)
    out = dm.transform(random_images(4, 16), train=True)
    assert out.shape == (4, 3, 16, 16)


def test_bad_aug_value_from_the_command_line_is_a_config_error(make_cfg) -> None:
    with pytest.raises(InstantiationException) as info:
        instantiate(make_cfg("data=synthetic", "aug.hflip=1.5").data)
    assert isinstance(info.value.__cause__, ConfigError)
    assert "aug.hflip=1.5" in str(info.value.__cause__)


def test_image_folder_preset(make_cfg, tree: Path) -> None:
    cfg = make_cfg("data=image_folder", f"data.root={tree}", "data.num_classes=3", "data.stored_size=8")
    dm = instantiate(cfg.data)
    assert isinstance(dm, ImageFolderDataModule)
    # Resize(259) + CenterCrop(227) of the whole photo, whatever its stored size (here 8x8).
    assert dm.transform.eval_crop == 0.875 and dm.transform.resize_side == 259 and dm.root == tree
    assert dm.cache_dir == Path(cfg.paths.cache_dir)
    dm.setup()
    assert dm.classes == CLASSES and dm.cache_hit is False


@pytest.mark.parametrize("input_size", [32, 64, 224])
def test_photo_presets_show_the_whole_photo_at_any_input_size(make_cfg, tree: Path, input_size: int) -> None:
    cfg = make_cfg("data=image_folder", f"data.root={tree}", f"model.input_size={input_size}")
    transform = instantiate(cfg.data).transform
    out = transform(framed_photos(side=256, frame=48))
    white = normalized(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).view(-1)[0]
    assert torch.isclose(out[0, 0, 0], white, atol=1e-3).all()  # the photo's frame, not a centre patch
    assert transform.resize_side == round(input_size / 0.875)


def test_image_folder_counts_its_class_folders_without_num_classes(make_cfg, tree: Path) -> None:
    cfg = make_cfg("data=image_folder", f"data.root={tree}")
    assert cfg.data.num_classes == 3 and cfg.model.num_classes == 3
    validate_config(cfg)
    (tree / "train" / "empty").mkdir()
    assert make_cfg("data=image_folder", f"data.root={tree}").data.num_classes == 4
    assert make_cfg("data=image_folder", f"data.root={tree}", "data.skip_bad_files=true").data.num_classes == 3


def test_image_folder_num_classes_given_is_checked_in_one_line(make_cfg, tree: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(make_cfg("data=image_folder", f"data.root={tree}", "data.num_classes=5"))
    assert str(caught.value).startswith("data.num_classes=5: ") and "has 3 class folders" in str(caught.value)
    assert "\n" not in str(caught.value)
    validate_config(make_cfg("data=image_folder", f"data.root={tree}", "data.num_classes=3"))


def test_image_folder_without_train_folder_and_num_classes_is_one_line(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^data.root=.*nowhere: no train/ folder there") as caught:
        validate_config(make_cfg("data=image_folder", f"data.root={tmp_path / 'nowhere'}"))
    assert "\n" not in str(caught.value)
