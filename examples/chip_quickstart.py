"""Drive eight circuits of the virtual chip with one input spike train.

The circuits share one synapse row but get different weights (8 .. 63), so
their membranes integrate the same input with different strength. The same
configuration runs on an ideal chip and on an uncalibrated realistic chip
(fixed-pattern mismatch and temporal noise): on the ideal chip the spike count
grows with the weight, on the realistic one mismatch scrambles the order, which
is what calibration is for. The script prints both columns and writes a plot of
the MADC trace of the strongest circuit and the spike rasters.

Run::

    python examples/chip_quickstart.py [--out results/chip_quickstart.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cysim import ROW_EXC, ChipConfig, Stimulus, VirtualChip, event_label


def build_config(weights: np.ndarray) -> tuple[ChipConfig, int]:
    """Circuits 0..len(weights)-1 listen on synapse row 0 with the given weights."""
    cfg = ChipConfig()
    n = len(weights)
    cfg.enable_spiking[:n] = True
    cfg.v_threshold[:n] = 600
    cfg.row_modes[0, 0] = ROW_EXC
    cfg.synapse_weights[0, 0, :n] = weights
    cfg.synapse_labels[0, 0, :n] = 3
    cfg.madc_circuits = [n - 1]
    return cfg, event_label(0, 0, 3)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/chip_quickstart.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    weights = np.linspace(8, 63, 8).astype(int)
    cfg, label = build_config(weights)
    input_times = np.arange(5.0, 95.0, 2.5)  # [us] 400 kHz in hardware time
    stimulus = Stimulus(input_times, np.full(len(input_times), label))
    ideal = VirtualChip.ideal().run(cfg, stimulus, duration_us=100.0)
    result = VirtualChip(seed=args.seed).run(cfg, stimulus, duration_us=100.0)

    counts = result.spike_counts()[0, : len(weights)]
    ideal_counts = ideal.spike_counts()[0, : len(weights)]
    print("weight  spikes(ideal)  spikes(uncalibrated chip)")
    for w, ci, c in zip(weights, ideal_counts, counts, strict=True):
        print(f"{w:6d}  {ci:13d}  {c:25d}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
    ax0.plot(result.madc_times_us, result.madc[0, :, 0], lw=0.8)
    ax0.set_ylabel(f"MADC circuit {len(weights) - 1} [LSB]")
    for t in input_times:
        ax0.axvline(t, color="0.85", lw=0.5, zorder=0)
    for res, dy, name in ((ideal, -0.2, "ideal"), (result, 0.2, "uncalibrated")):
        circuits, times = res.spikes(0)
        ax1.plot(times, circuits + dy, "|", ms=5, label=name)
    ax1.legend(loc="upper left", fontsize=8)
    ax1.set_yticks(range(len(weights)), [f"w={w}" for w in weights])
    ax1.set_xlabel("hardware time [us]")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"plot written to {args.out}")
    return {"weights": weights, "counts": counts, "ideal_counts": ideal_counts}


if __name__ == "__main__":
    main()
