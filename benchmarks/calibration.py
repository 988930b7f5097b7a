"""Speed of the calibration: all 512 circuits to LIF targets, then the cached lookup.

Prints ``RESULT {json}`` as its last line with ``full_chip_seconds`` (a fresh calibration
of a realistic chip: mismatch and noise), ``cached_seconds`` (the same call answered from
the cache), the number of chip runs and the largest residuals of the check run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

from cysim import VirtualChip
from pynn_brainscales2.calibration import CalibrationTargets, calibrate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh calibrations (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    targets = CalibrationTargets()
    fresh = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            chip = VirtualChip(seed=args.seed + k)
            t0 = time.perf_counter()
            result = calibrate(chip, targets, cache=os.path.join(tmp, str(k)))
            fresh.append(time.perf_counter() - t0)
            assert not result.from_cache
        cached = []
        for _ in range(20):
            t0 = time.perf_counter()
            again = calibrate(VirtualChip(seed=args.seed), targets, cache=os.path.join(tmp, "0"))
            cached.append(time.perf_counter() - t0)
            assert again.from_cache
    out = {
        "full_chip_seconds": round(float(np.median(fresh)), 3),
        "cached_seconds": round(float(np.median(cached)), 4),
        "fresh_runs_seconds": [round(x, 3) for x in fresh],
        "chip_runs": result.runs,
        "worst_residual": {k: round(v, 4) for k, v in result.summary().items()},
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
    }
    print(f"full chip: {out['full_chip_seconds']:.2f} s, cached: {out['cached_seconds'] * 1e3:.1f} ms")
    print("RESULT " + json.dumps(out))
    return out


if __name__ == "__main__":
    main()
