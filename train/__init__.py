"""Training stage: datasets over the stores, the five seed models, loops, metrics.

Not built yet (issue "Training stage"); the package exists so the layout of the
design card is in place.  It will read stores through ``data_schema`` only.
"""
