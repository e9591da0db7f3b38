"""Cost of a supplier login check: full password verification vs the verified-login cache.

The registry's hashes are PBKDF2-SHA512 at 210,000 iterations (``lec/registry/passwords.py``);
the MQTT and SFTP servers keep a per-process ``LoginCache`` so a repeat login costs one HMAC.
Baseline in the same run: the old 101-iteration hash.

    .venv/bin/python bench/logins.py [--full 5] [--cached 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lec.registry.passwords import ITERATIONS, LEGACY_ITERATIONS, LoginCache, hash_password, verify_password


def per_op(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", type=int, default=5)
    ap.add_argument("--cached", type=int, default=20000)
    args = ap.parse_args()
    strong = hash_password("home-box-secret")
    legacy = hash_password("home-box-secret", iterations=LEGACY_ITERATIONS)
    cache = LoginCache()
    assert cache.verify("sup-home", "home-box-secret", strong)
    full = statistics.median(per_op(lambda: verify_password("home-box-secret", strong), args.full) for _ in range(3))
    old = statistics.median(per_op(lambda: verify_password("home-box-secret", legacy), 200) for _ in range(3))
    hit = statistics.median(per_op(lambda: cache.verify("sup-home", "home-box-secret", strong), args.cached)
                            for _ in range(3))
    print(f"full verification, {ITERATIONS} iterations: {full * 1000:.1f} ms/login ({1 / full:.1f} logins/s)")
    print(f"baseline, {LEGACY_ITERATIONS} iterations (old registry): {old * 1e6:.1f} us/login")
    print(f"cached verified login: {hit * 1e6:.1f} us/login ({1 / hit:,.0f} logins/s)")
    print(f"ratio cached/full: {hit / full:.5f}; full/old: {full / old:,.0f}x")


if __name__ == "__main__":
    main()
