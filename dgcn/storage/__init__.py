"""On-disk formats: atomic publishing of artifacts and the Zarr v3 label store."""

from dgcn.storage.atomic import atomic_output, staged_directory
from dgcn.storage.labels import LabelStore, LabelStoreWriter, write_label_store

__all__ = ["LabelStore", "LabelStoreWriter", "atomic_output", "staged_directory", "write_label_store"]
