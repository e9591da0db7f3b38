"""Garbage-collector settings for the long-running workers (streams, lake sink).

A worker allocates millions of short-lived containers (rows, tuples, records) that reference counting
frees; almost none are in cycles. At CPython's default threshold (700 allocations) the collector runs
thousands of times per second and its older generations walk everything the worker keeps (the
registry snapshot, per-flow state), which measured 20-40% of the streams worker's per-reading time on a
distributor's file (docs/benchmarks.md). What exists at start-up is frozen (never scanned again) and
young collections run every 100k allocations: cycles are still collected, less often.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 100_000


def tune_for_throughput() -> None:
    """Freeze what start-up built and collect young objects every GEN0_THRESHOLD allocations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, 50, 100)
