"""Datasets in their published formats, held whole on the training device."""

from kdrepro.data.device import DeviceData, random_crop_flip, stratified
from kdrepro.data.meta import DatasetMeta, dataset_meta, split_problems
from kdrepro.data.sources import DATASETS, DatasetError, DatasetInfo, Split, load_dataset, register_dataset

__all__ = ["DATASETS", "DatasetError", "DatasetInfo", "DatasetMeta", "DeviceData", "Split", "dataset_meta", "load_dataset",
           "random_crop_flip", "register_dataset", "split_problems", "stratified"]
