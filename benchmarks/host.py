"""How fast this host runs right now: a fixed reference workload timed in the benchmark's own
process. Shared machines (VMs, CI runners) change speed by up to 2× over minutes, every
workload alike; printing this next to a figure tells a slow host from slow code.
"""

from __future__ import annotations

import time

import numpy as np


def reference_ms(repeat: int = 5) -> float:
    """Best of ``repeat`` runs of a fixed mix of interpreter work and small numpy calls (the mix
    a supervisor step is made of), in milliseconds."""
    a = np.zeros(50)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        s = 0
        for i in range(100_000):
            s += i * i
        for _ in range(2_000):
            a = a + 1.0
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def describe(ms: float) -> str:
    """One line for a benchmark's output."""
    return (f"host reference workload: {ms:.2f} ms (lower is faster; compare figures only between "
            "runs with similar values)")
