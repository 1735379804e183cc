"""Adapters from mtrlrec's pure environments to other libraries' APIs.

Nothing in the rest of the package imports this subpackage; it may import
``mtrlrec.core`` and ``mtrlrec.envs``. Third-party packages (Gymnasium) are
imported only when an adapter is built, so the core install does not need them.
"""

from mtrlrec.interop.gymnasium import to_gymnasium, to_gymnasium_vector

__all__ = ["to_gymnasium", "to_gymnasium_vector"]
