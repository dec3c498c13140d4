"""data: image datasets (:func:`load_dataset`) and the readers behind it."""

from .download import DatasetNotFoundError
from .idx import DataError
from .images import DATASETS, ImageDataset, load_dataset

__all__ = ["load_dataset", "ImageDataset", "DATASETS", "DataError", "DatasetNotFoundError"]
