"""Thin DVC stage entry points and the ``fermaps`` command line (``python -m pipeline``).

Stages read params, list items, run the per-item preprocess function on dask, write
the store and its failure manifest.  No image or geometry logic lives here.
"""
