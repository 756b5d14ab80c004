"""The data contract: whole splits held as uint8 tensors, batches as shuffled index slices.

A :class:`DeviceDataModule` decodes its dataset once (subclasses implement :meth:`load`), moves
each split to the training device (GPU when there is one), and hands out uint8 NCHW batches at
the stored size. :class:`~alexnet_study.data.transforms.DeviceTransform` turns them into the
model's input (the whole image, at any input size) in ``on_after_batch_transfer``, batched, on
that device.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import lightning as L
import torch

from alexnet_study.data.transforms import Augment, DeviceTransform
from alexnet_study.errors import ConfigError, DataError, check_int, check_number

log = logging.getLogger(__name__)


@dataclass
class Split:
    """One split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise TypeError(f"images must be uint8 NCHW, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.labels[index])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device, non_blocking=True), self.labels.to(device, non_blocking=True))


@dataclass
class Dataset:
    """What a loader returns: the splits it has (``val``/``test`` may be absent) and class names."""

    train: Split
    classes: list[str]
    val: Split | None = None
    test: Split | None = None
    info: dict[str, object] = field(default_factory=dict)


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int, key: str = "data.val_fraction"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (kept, held out) with ``round(fraction * n_c)`` held out of each class ``c``.

    Seeded and independent of the global RNG, so the same seed always gives the same split.
    ``key`` names the config key in the error for a fraction outside [0, 1).
    """
    check_number(key, fraction, 0, below=1)
    generator = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_held = round(fraction * len(members))
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


# Evaluation orders are drawn from a fixed seed, not the run's: every arm and repeat of a study that
# evaluates part of a split (trainer.limit_val_batches / limit_test_batches) sees the same images.
EVAL_ORDER_SEED = 0


def interleaved_order(labels: torch.Tensor, seed: int = EVAL_ORDER_SEED) -> torch.Tensor:
    """A permutation in which every prefix holds each class in proportion to its size.

    Loaders return splits sorted by class folder; evaluating the first batches of such a split (Lightning's
    ``limit_*_batches``) would test a few classes only. Each sample's key is (its seeded random rank within
    its class + 0.5) / the class's size: sorting by it spreads every class evenly along the order, so a
    prefix up to any key holds round(key * size) of each class.
    """
    generator = torch.Generator().manual_seed(seed)
    keys = torch.empty(len(labels), dtype=torch.float64)
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        rank = torch.randperm(len(members), generator=generator).double()
        keys[members] = (rank + 0.5) / len(members)
    return keys.argsort(stable=True)


class EpochSampler:
    """The index order of one epoch, for this rank. Lightning calls :meth:`set_epoch` each epoch.

    Shuffled orders are seeded by ``seed + epoch`` (reproducible, and the same on every rank,
    which then takes every ``world_size``-th index starting at its ``rank``). Unshuffled ones follow
    ``order`` when given (evaluation: :func:`interleaved_order`), else the split's own. With ``even``
    the order is first cut to a multiple of ``world_size``, so every rank gets as many samples
    (and runs as many training steps) as the others. Without it (evaluation) every index is used
    exactly once, with no padding: metrics reduced over the processes count each sample once.
    """

    def __init__(
        self,
        size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        even: bool = False,
        order: torch.Tensor | None = None,
    ) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.even = rank, world_size, even
        if order is not None and (shuffle or order.shape != (size,)):
            raise ValueError(f"a fixed order of {size} indices is for unshuffled samplers, got {tuple(order.shape)}")
        self.order = order
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _used(self) -> int:
        return self.size - self.size % self.world_size if self.even else self.size

    def __len__(self) -> int:
        return len(range(self.rank, self._used(), self.world_size))

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = self.order if self.order is not None else torch.arange(self.size)
        return order[: self._used()][self.rank :: self.world_size]


class DeviceBatchLoader:
    """Iterates (images, labels) batches as index slices of a (device-resident) :class:`Split`.

    The per-epoch index order is copied to the data's device once; every batch is then an
    ``index_select`` there, with no host work per sample and no host-device sync.

    Resumable: Lightning stores :meth:`state_dict` (the batches of the current epoch already
    served) in mid-epoch checkpoints and hands it back through :meth:`load_state_dict`, so a
    resumed epoch continues with the next batch of the same order instead of replaying it.
    """

    def __init__(self, split: Split, batch_size: int, sampler: EpochSampler, drop_last: bool = False) -> None:
        self.split, self.batch_size, self.sampler, self.drop_last = split, batch_size, sampler, drop_last
        # Lightning inspects DataLoader-like objects: the sampler (for set_epoch) and this one.
        self.batch_sampler = None
        self._served = 0  # batches handed out by the current iterator
        self._skip = 0  # batches the next iterator starts after (set by load_state_dict)

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start, self._skip = self._skip, 0
        self._served = start
        return self._batches(start)

    def _batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Lazy: the order is drawn at the first batch, after Lightning's set_epoch.
        order = self.sampler.indices().to(self.split.images.device, non_blocking=True)
        for batch in range(start, len(self)):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            self._served = batch + 1
            yield self.split.images.index_select(0, index), self.split.labels.index_select(0, index)

    def state_dict(self) -> dict[str, int]:
        return {"batches_served": self._served, "batch_size": self.batch_size, "size": len(self.sampler)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        saved = (state.get("batch_size"), state.get("size"))
        if saved != (self.batch_size, len(self.sampler)):
            raise ConfigError(
                f"data.batch_size={self.batch_size} with {len(self.sampler)} training images: the checkpoint was written "
                f"with batch size {saved[0]} and {saved[1]} images; resume with the same data settings"
            )
        served = int(state["batches_served"])
        # A finished epoch: the next iterator starts the next epoch from its first batch.
        self._skip = served if served < len(self) else 0


class DeviceDataModule(L.LightningDataModule):
    """Base for every dataset: decode once (:meth:`load`), hold uint8 splits, transform on device.

    Args:
        num_classes: classes the config expects; checked against the loaded dataset.
        batch_size: training batch size (per device); ``eval_batch_size`` defaults to it.
        image_size: the model's input side; batches are resized to it on the device.
        val_fraction: share of each training class held out for validation when the dataset
            has no validation split of its own (0 disables validation).
        seed: seeds the validation split and the shuffling.
        normalize: ``imagenet`` or ``half`` (0.5/0.5).
        eval_crop: share of the whole image's side that evaluation keeps: Resize(round(image_size /
            eval_crop)) + CenterCrop(image_size), at any stored size (0.875 for photos, 1.0 for CIFAR).
        aug: training augmentation (``aug=`` config group).
        crop_pad: the dataset's standard zero padding for random crops, as a fraction of the
            stored side (``aug.pad`` null uses it): 0.125 on CIFAR's 32x32, 0 on photos.
        on_device: hold the splits on the training device (else on the host, copied per batch).
        val_as_test: when the dataset has no test split, report the validation split as the test
            set too (the ants/bees set has only train/ and val/).
    """

    name = "dataset"

    def __init__(
        self,
        *,
        num_classes: int,
        batch_size: int = 128,
        image_size: int = 227,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        normalize: str = "imagenet",
        eval_crop: float = 1.0,
        aug: Augment | None = None,
        crop_pad: float = 0.0,
        on_device: bool = True,
        drop_last: bool = True,
        val_as_test: bool = False,
    ) -> None:
        super().__init__()
        check_int("data.batch_size", batch_size, 1)
        if eval_batch_size is not None:
            check_int("data.eval_batch_size", eval_batch_size, 1)
        check_number("data.val_fraction", val_fraction, 0, below=1)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.on_device = on_device
        self.drop_last = drop_last
        self.val_as_test = val_as_test
        self.transform = DeviceTransform(
            image_size, normalize=normalize, eval_crop=eval_crop, augment=aug, default_pad=crop_pad
        )
        self.dataset: Dataset | None = None
        # Device copies keyed by (id of the host split, device): a split that is two splits at once
        # (val_as_test) is copied once. The host split is kept with its copy, so its id stays its own.
        self._on_device: dict[tuple[int, str], tuple[Split, Split]] = {}

    # -- subclasses --------------------------------------------------------------------------
    def load(self) -> Dataset:
        """Decode the dataset into uint8 CPU tensors (called once, in :meth:`setup`)."""
        raise NotImplementedError

    # -- Lightning hooks ---------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        dataset = self.load()
        found = len(dataset.classes)
        if found != self.num_classes:
            raise DataError(
                f"{self.name}: found {found} classes but data.num_classes={self.num_classes}; "
                f"set data.num_classes={found} (classes: {', '.join(dataset.classes[:10])}{', ...' if found > 10 else ''})"
            )
        if dataset.val is None and self.val_fraction > 0:
            kept, held = stratified_split(dataset.train.labels, self.val_fraction, self.seed)
            dataset.val, dataset.train = dataset.train.subset(held), dataset.train.subset(kept)
        if self.val_as_test and dataset.test is None:
            if dataset.val is None:
                raise DataError(f"{self.name}: data.val_as_test=true but there is no validation split")
            dataset.test = dataset.val
        self.dataset = dataset
        sizes = ", ".join(f"{name} {len(s)}" for name, s in self.splits().items())
        log.info(
            "%s: %s images, %d classes, stored as %s uint8",
            self.name,
            sizes,
            found,
            tuple(dataset.train.images.shape[1:]),
        )
        log.info("%s: %s", self.name, self.transform.describe(*dataset.train.images.shape[-2:]))

    def splits(self) -> dict[str, Split]:
        """The splits present after :meth:`setup`, by name."""
        if self.dataset is None:
            raise RuntimeError("call setup() first")
        named = {"train": self.dataset.train, "val": self.dataset.val, "test": self.dataset.test}
        return {name: split for name, split in named.items() if split is not None}

    def summary(self) -> dict[str, object]:
        """What was loaded, for ``metrics.json``: split sizes, class count, and the loader's info
        (root, file count, fingerprint, skipped unreadable files)."""
        if self.dataset is None:
            return {"name": self.name, "loaded": False}
        info = dict(self.dataset.info)
        bad = list(info.pop("bad_files", []))
        return {
            "name": self.name,
            "splits": {name: len(split) for name, split in self.splits().items()},
            "num_classes": len(self.dataset.classes),
            "stored_shape": list(self.dataset.train.images.shape[1:]),
            **info,
            "bad_files": len(bad),
            "bad_file_examples": bad[:10],
        }

    @property
    def classes(self) -> list[str]:
        if self.dataset is None:
            raise RuntimeError("call setup() first")
        return self.dataset.classes

    def train_dataloader(self) -> DeviceBatchLoader:
        return self._loader("train", self.batch_size, shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DeviceBatchLoader | list:
        return self._loader("val", self.eval_batch_size) if "val" in self.splits() else []

    def test_dataloader(self) -> DeviceBatchLoader | list:
        return self._loader("test", self.eval_batch_size) if "test" in self.splits() else []

    def predict_dataloader(self) -> DeviceBatchLoader | list:
        return self.test_dataloader()

    def on_after_batch_transfer(
        self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        if self.transform.mean.device != images.device:
            self.transform.to(images.device)
        training = self.trainer is not None and self.trainer.training
        return self.transform(images, train=training), labels

    # -- helpers -----------------------------------------------------------------------------
    def _device(self) -> torch.device:
        if self.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _loader(self, name: str, batch_size: int, shuffle: bool = False, drop_last: bool = False) -> DeviceBatchLoader:
        device = self._device()
        source = self.splits()[name]
        key = (id(source), str(device))
        if key not in self._on_device:
            self._on_device[key] = (source, source.to(device))
        split = self._on_device[key][1]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        # Evaluation follows a class-interleaved order: a partial evaluation (limit_*_batches) is then a
        # stratified sample of the split, not its first classes.
        order = None if shuffle else interleaved_order(source.labels)
        sampler = EpochSampler(
            len(split), shuffle=shuffle, seed=self.seed, rank=rank, world_size=world, even=drop_last, order=order
        )
        if drop_last and len(sampler) < batch_size:
            raise ConfigError(
                f"data.batch_size={batch_size}: larger than the {name} split on this device ({len(sampler)} images)"
            )
        if len(sampler) == 0 and len(split) > 0:
            # Under DDP each process must evaluate at least one batch: the first one's forward pass
            # synchronizes the model's buffers (BatchNorm statistics) across processes.
            raise ConfigError(
                f"the {name} split has {len(split)} images for {world} processes: give each at least one (use fewer "
                "devices or a larger split)"
            )
        return DeviceBatchLoader(split, batch_size, sampler, drop_last=drop_last)
