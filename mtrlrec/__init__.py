"""mtrlrec: reinforcement learning for recommender systems in pure JAX."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("mtrlrec")  # the installed distribution's version
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.1.0"
