"""Project exceptions.

Bad input raises :class:`InputError` naming the file and the reason; a stage catches
it per item, records it in ``failures.jsonl`` and goes on.  Store contract violations
raise :class:`SchemaError`.
"""
from __future__ import annotations

import os


class FermapsError(Exception):
    """Base class of every error fermaps raises on purpose."""


class InputError(FermapsError):
    """A raw input file (or item) cannot be used.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file (or item id when there is no single file).
    reason : str
        Human-readable reason, e.g. ``"truncated: header promises 1.7 MB, file has 12 bytes"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep (path, reason) across process boundaries (dask workers)
        return (type(self), (self.path, self.reason))


class SchemaError(FermapsError):
    """A store or shard does not match the schema it claims (name, version, dataset)."""
