"""Project exceptions.

Bad input raises :class:`InputError` naming the file and the reason; a stage catches
it per item, records it in ``failures.jsonl`` and goes on.  Store contract violations
raise :class:`SchemaError`.  Parameters or data that cannot make a valid run (too few
subjects for the folds, a config that contradicts the checkpoint it would resume)
raise :class:`ConfigError`.  The CLI prints any of them as one line, without a
traceback.
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


class ConfigError(FermapsError, ValueError):
    """Parameters, or the data they meet, cannot make a valid run: e.g. ``cannot make 4
    subject-independent folds of 3 subjects``, ``cannot resume, the config changed``.
    Also a ``ValueError``, which is what it is to Python code that calls the function."""
