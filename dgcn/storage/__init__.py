"""On-disk formats: atomic publishing of artifacts, the Zarr v3 label store and the evidence store."""

from dgcn.storage.atomic import atomic_output, staged_directory
from dgcn.storage.evidence import Evidence, EvidenceStore, EvidenceStoreWriter
from dgcn.storage.labels import LabelStore, LabelStoreWriter, write_label_store

__all__ = [
    "Evidence",
    "EvidenceStore",
    "EvidenceStoreWriter",
    "LabelStore",
    "LabelStoreWriter",
    "atomic_output",
    "staged_directory",
    "write_label_store",
]
