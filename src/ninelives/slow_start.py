"""Slow start: a server that comes back takes a growing share of its weight, not all of it.

A server back from down, from an ejection or from maint starts at ``RAMP_FLOOR`` of its
weight and grows linearly to all of it over the pool's ``slow_start``. HAProxy's slowstart
grows the weight from about 1%, so for the first tenth of the ramp the server gets almost
nothing and learns nothing (cold caches, connection pools, JIT stay cold); Envoy starts at
10% (``min_weight_percent``), as we do.

The share is a pure function of the time since the server came back, in whole percents, so
the pool rebuilds its candidate snapshot at most a hundred times per ramp (on the node's
sweep tick) and the balancers see a ramp only as one more weight change.
"""

from __future__ import annotations

RAMP_FLOOR = 0.1  # share of its weight a server takes the moment it is back
_STEPS = 100  # shares move in whole percents


def ramp_share(elapsed: float, duration: float) -> float:
    """The share of its weight a server takes ``elapsed`` seconds into a ramp of
    ``duration``: ``RAMP_FLOOR`` at the start, 1.0 at the end and after."""
    if duration <= 0 or elapsed >= duration:
        return 1.0
    progress = max(0.0, elapsed) / duration
    share = RAMP_FLOOR + (1.0 - RAMP_FLOOR) * progress
    return int(share * _STEPS) / _STEPS
