"""Readers of raw 3-D scans and face sequences, one module per format, and the
suffix registry that picks one.

``read_scan(path) -> Scan``, ``read_sequence(path) -> Sequence`` and
``list_items(root)`` (every scan file, image-sequence folder and video under a raw
folder, in a deterministic order) are the whole public interface.
"""
from preprocess.io.registry import (  # noqa: F401
    FORMATS, Format, RawItem, format_of, list_items, read_item, read_scan, read_sequence,
)
