"""Training stage: datasets over the stores, the five seed models, loops, metrics.

Built so far: ``train.models`` (registry ``create_model(name, **cfg)`` and the five
models AMDFN, FFNet-M, STCAM, HACN, WS-LGAN).  Datasets, splits, loops and the
``train`` / ``evaluate`` DVC stages are not built yet.  Reads stores through
``data_schema`` only.
"""
