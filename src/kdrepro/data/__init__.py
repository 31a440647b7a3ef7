"""Datasets in their published formats, held whole on the training device.

The package itself is what is known without loading anything (kdrepro.data.meta: classes, image sizes,
split sizes, where a dataset lives), so that settings and run specs are checked without importing torch;
the readers (kdrepro.data.sources), the device-resident data (kdrepro.data.device) and the batch samplers
(kdrepro.data.samplers) are imported from their modules by what trains.
"""

from kdrepro.data.meta import DatasetError, DatasetMeta, dataset_meta, default_root, split_problems

__all__ = ["DatasetError", "DatasetMeta", "dataset_meta", "default_root", "split_problems"]
