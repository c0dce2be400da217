"""The fermaps contract: store schemas, label maps, typed parameters, errors.

Imports nothing else from the project; every other package may import it.
"""
