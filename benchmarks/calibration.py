"""Speed of the calibration: all 512 circuits to LIF targets, then the cached lookup.

Prints ``RESULT {json}`` as its last line with ``full_chip_seconds`` (a fresh calibration
of a realistic chip: mismatch and noise), ``cached_seconds`` (the same call answered from
the cache), the number of chip runs and the largest residuals of the check run; and
``adex_full_chip_seconds``: a fresh calibration of all 512 circuits to LIF and AdEx targets
(exponential term and adaptation; ``adex_seconds`` of it for the AdEx steps) with its
largest residuals (``--no-adex`` skips it).
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
from pynn_brainscales2.calibration import ADEX_TARGETS as ADEX_TARGET_NAMES
from pynn_brainscales2.calibration import CalibrationTargets, calibrate

#: AdEx targets of every circuit (the LIF targets are the defaults; V_T below the threshold)
ADEX_TARGETS = CalibrationTargets(v_exp_lsb=110.0, delta_t_lsb=4.0, adapt_a=0.02, adapt_b=1.0, tau_w_us=100.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh calibrations (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-adex", action="store_true", help="skip the AdEx calibration")
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
        adex = None
        if not args.no_adex:
            # the LIF part first (cached on its own), then the AdEx steps on top of it
            chip, where = VirtualChip(seed=args.seed), os.path.join(tmp, "adex")
            t0 = time.perf_counter()
            calibrate(chip, ADEX_TARGETS.without_adex(), cache=where)
            t1 = time.perf_counter()
            adex = calibrate(chip, ADEX_TARGETS, cache=where)
            adex_times = (t1 - t0, time.perf_counter() - t1)
            assert not adex.from_cache
    out = {
        "full_chip_seconds": round(float(np.median(fresh)), 3),
        "cached_seconds": round(float(np.median(cached)), 4),
        "fresh_runs_seconds": [round(x, 3) for x in fresh],
        "chip_runs": result.runs,
        "worst_residual": {k: round(v, 4) for k, v in result.summary().items()},
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
    }
    if adex is not None:
        out["adex_full_chip_seconds"] = round(sum(adex_times), 2)
        out["adex_seconds"] = round(adex_times[1], 2)
        out["adex_chip_runs"] = adex.runs
        out["adex_worst_residual"] = {k: round(adex.summary()[k], 4) for k in ADEX_TARGET_NAMES}
    print(f"full chip: {out['full_chip_seconds']:.2f} s, cached: {out['cached_seconds'] * 1e3:.1f} ms")
    if adex is not None:
        print(
            f"full chip with AdEx targets: {out['adex_full_chip_seconds']:.1f} s ({out['adex_seconds']:.1f} s AdEx)"
        )
    print("RESULT " + json.dumps(out))
    return out


if __name__ == "__main__":
    main()
