"""DataModules that decode once and hand out uint8 batches; transforms run on the device."""

from alexnet_study.data.base import (
    Dataset,
    DeviceBatchLoader,
    DeviceDataModule,
    EpochSampler,
    Split,
    interleaved_order,
    stratified_split,
)
from alexnet_study.data.caltech import Caltech101DataModule
from alexnet_study.data.cifar import CIFARDataModule
from alexnet_study.data.files import FileList, ImageFilesDataModule
from alexnet_study.data.flowers import Flowers17DataModule
from alexnet_study.data.folders import HymenopteraDataModule, ImageFolderDataModule
from alexnet_study.data.synthetic import SyntheticDataModule
from alexnet_study.data.transforms import Augment, DeviceTransform

__all__ = [
    "Augment",
    "CIFARDataModule",
    "Caltech101DataModule",
    "Dataset",
    "DeviceBatchLoader",
    "DeviceDataModule",
    "DeviceTransform",
    "EpochSampler",
    "FileList",
    "Flowers17DataModule",
    "HymenopteraDataModule",
    "ImageFilesDataModule",
    "ImageFolderDataModule",
    "Split",
    "SyntheticDataModule",
    "interleaved_order",
    "stratified_split",
]
