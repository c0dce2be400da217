"""Pure functions on numpy arrays: readers, geometry, images.

Nothing here knows about DVC, dask or HDF5; it imports ``data_schema`` only.
"""
