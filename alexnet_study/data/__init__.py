"""DataModules that decode once and hand out uint8 batches; transforms run on the device."""

from alexnet_study.data.base import Dataset, DeviceBatchLoader, DeviceDataModule, EpochSampler, Split, stratified_split
from alexnet_study.data.cifar import CIFARDataModule
from alexnet_study.data.folders import ImageFolderDataModule
from alexnet_study.data.synthetic import SyntheticDataModule
from alexnet_study.data.transforms import Augment, DeviceTransform

__all__ = [
    "Augment",
    "CIFARDataModule",
    "Dataset",
    "DeviceBatchLoader",
    "DeviceDataModule",
    "DeviceTransform",
    "EpochSampler",
    "ImageFolderDataModule",
    "Split",
    "SyntheticDataModule",
    "stratified_split",
]
