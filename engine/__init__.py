"""Annostream engine: the core library (config, VCF model, normalisation, annotation, storage, CLI).

Producers, consumers and the API are thin adapters over this package.
"""

__version__ = "0.1.0"
