"""Keep the cyclic garbage collector's full passes off the request path.

A loaded model brings a catalog of tens of thousands of objects that live until the next swap;
every full (generation 2) pass of the collector walks them all while holding the GIL — 80 ms
with the 50,000-SKU model, long enough to put a stall into every decision in flight
(``bench/decide.py`` showed it as the p99). Once start-up has loaded everything long-lived,
:func:`freeze_long_lived` moves it to the collector's permanent generation: full passes then
walk only what the gateway allocated since. Frozen objects are still freed by reference
counting when nothing refers to them any more (a swapped-out model is), so this changes when
cycles are looked for, not what is kept.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_long_lived"]


def freeze_long_lived(*, collect: bool = True) -> None:
    """Freeze every object alive now. ``collect`` first frees garbage cycles, which would
    otherwise stay frozen (at start-up, where the pause does not matter)."""
    if collect:
        gc.collect()
    gc.freeze()
