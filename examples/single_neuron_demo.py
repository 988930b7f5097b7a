"""Fixed-pattern variation of neuron circuits, before and after calibration.

Eight circuits of a realistic virtual chip get the same model targets (leak above the
threshold: the membrane charges towards the leak, fires, resets, and so on). First with
the CapMem values the nominal design transfer functions give for these targets (what one
would write without measuring the chip), then with the values the calibration found by
measurement. The script prints each circuit's firing rate in both cases and their spread,
and writes the MADC/CADC membrane traces to ``results/single_neuron_demo.png``.

Run: ``python examples/single_neuron_demo.py [--seed 0] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cysim import ChipConfig, VirtualChip
from cysim import constants as C
from pynn_brainscales2 import hardware as hw
from pynn_brainscales2.calibration import CalibrationTargets, calibrate

CIRCUITS = np.arange(8)
TARGETS = CalibrationTargets(
    tau_mem_us=20.0, leak_lsb=155.0, reset_lsb=60.0, threshold_lsb=125.0, refractory_us=2.0
)
DURATION_US = 1000.0


def nominal_config(targets: CalibrationTargets) -> ChipConfig:
    """CapMem values from the nominal design transfer functions (no measurement)."""
    cfg = ChipConfig()
    cfg.v_leak = hw.nominal_potential_capmem(targets.array("leak_lsb"))
    cfg.v_reset = hw.nominal_potential_capmem(targets.array("reset_lsb"))
    cfg.v_threshold = hw.nominal_potential_capmem(targets.array("threshold_lsb"))
    cfg.i_bias_leak = np.rint(hw.nominal_tau_capmem(targets.array("tau_mem_us"), 150.0, 0.2)).astype(int)
    cfg.refractory_time = np.clip(
        np.rint(targets.array("refractory_us") / 0.035 - 1), 0, C.CAPMEM_MAX
    ).astype(int)
    return cfg


def record(chip: VirtualChip, cfg: ChipConfig):
    """Spike counts and CADC traces of the demo circuits (no synaptic input)."""
    cfg = cfg.copy()
    cfg.row_modes = C.ROW_OFF
    cfg.enable_spiking = False
    cfg.enable_spiking[CIRCUITS] = True
    cfg.cadc_enable = True
    res = chip.run(cfg, duration_us=DURATION_US)
    circuits, times = res.spikes(0)
    rates = np.full(len(CIRCUITS), np.nan)
    for k, c in enumerate(CIRCUITS):
        t = times[circuits == c]
        if t.size >= 2:  # rate from the mean inter-spike interval [kHz, hardware time]
            rates[k] = 1e3 * (t.size - 1) / (t[-1] - t[0])
    return rates, res.cadc_times_us, res.cadc[0][:, CIRCUITS]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="chip seed")
    parser.add_argument("--out", type=Path, default=Path("results/single_neuron_demo.png"))
    args = parser.parse_args(argv)

    chip = VirtualChip(seed=args.seed)
    before = record(chip, nominal_config(TARGETS))
    calibration = calibrate(chip, TARGETS)
    after = record(chip, calibration.apply(ChipConfig()))
    ideal = record(VirtualChip.ideal(), calibrate(VirtualChip.ideal(), TARGETS).apply(ChipConfig()))

    print(f"circuit  rate before [kHz]  rate after [kHz]   (ideal chip: {ideal[0].mean():.1f} kHz)")
    for c, r0, r1 in zip(CIRCUITS, before[0], after[0], strict=True):
        print(f"{c:7d}  {r0:17.1f}  {r1:16.1f}")
    cv = {
        k: float(np.std(v[0]) / np.mean(v[0])) if np.mean(v[0]) > 0 else float("nan")
        for k, v in (("before", before), ("after", after))
    }
    print(f"rate spread (std/mean): before {cv['before']:.1%}, after {cv['after']:.1%}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, sharex=True, sharey=True, figsize=(7, 5.5))
    for ax, (_, t, v), title in (
        (axes[0], before, f"nominal CapMem values (rate spread {cv['before']:.0%})"),
        (axes[1], after, f"calibrated (rate spread {cv['after']:.1%})"),
    ):
        for k in range(len(CIRCUITS)):
            ax.plot(t, v[:, k], lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("CADC [LSB]")
    axes[1].set_xlabel("hardware time [us]")
    axes[1].set_xlim(0, 150)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")
    result = {
        "rate_cv_before": cv["before"],
        "rate_cv_after": cv["after"],
        "ideal_rate_khz": float(ideal[0].mean()),
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
