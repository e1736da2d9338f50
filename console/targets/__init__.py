"""Where the console's snapshots come from: the :class:`Target` protocol (:mod:`.base`), target
addresses (:mod:`.address`), the raw backdoor line protocol (:mod:`.line`), the backdoor target
(:mod:`.backdoor`) and the in-memory target of the tests and screenshots (:mod:`.memory`).
"""

from .address import TargetAddress
from .base import Target

__all__ = ["Target", "TargetAddress"]
