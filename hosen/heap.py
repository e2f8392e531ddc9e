"""The garbage collector in Hosen's long-running processes (``hosen worker``, ``serve``, ``inbox``).

Once such a process has imported its libraries and built its engine, clients and bot, it holds
about 150,000 objects that live as long as it does. Python's cyclic collector walks all of them at
every full collection: 80–160 ms with every thread stopped, every few seconds while a campaign
goes out (each batch of sends leaves a few thousand short-lived objects behind, and they push
the collector to its full passes). Frozen (:func:`gc.freeze`), those objects are left out of every
later collection; what the process builds afterwards is collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what start-up left behind, then freeze the rest; returns how many are frozen.

    Call it once, when the process is up and about to serve. A cycle among the frozen objects
    that becomes garbage later is never collected: only start-up's lifelong objects belong there.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
