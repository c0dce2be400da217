"""Training stage: datasets over the stores, the five seed models, loops, metrics.

``train.models`` (registry ``create_model(name, **cfg)``; AMDFN, FFNet-M, STCAM, HACN,
WS-LGAN), ``train.splits`` (subject-independent protocols and split manifests),
``train.data`` (lazy HDF5 datasets), ``train.augment`` (batch augmentation),
``train.loop`` (fit / evaluate with checkpoints and resume), ``train.metrics``,
``train.plots``, ``train.config`` (paper and small CPU configurations).  The DVC
stages are in ``pipeline/stages/train_stage.py``.  Reads stores through ``data_schema``.
"""
