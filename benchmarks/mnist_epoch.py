"""Speed of training: one epoch (60,000 images) of the MNIST network of ``examples/mnist.py``.

The network and the training step are the example's own: 22x22 TTFS inputs (T = 30 steps
of 1 us) -> 256 LIF -> 10 LI, 40 us per image on a 1 us grid, augmentation (rotation,
stroke noise), cross-entropy plus the regularisers, Adam, **batch 100** (600 optimiser
steps per epoch). Timed:

- ``mock_epoch_s``: ``snn.Experiment(mock=True)``; ``--mock-batches`` batches (default
  600, the whole epoch), extrapolated to 600 if fewer;
- ``chip_epoch_s``: ``snn.Experiment(mock=False)`` on ``VirtualChip(seed=0)`` (realistic):
  ``--chip-batches`` batches (default 10) after one warm-up batch (mapping and calibration,
  reported as ``chip_setup_s``), extrapolated to 600 batches (``chip_batches_measured``
  says how many were timed). When chip mode cannot run the network, ``chip_epoch_s`` is
  null and ``chip_error`` gives the reason.

``--profile`` runs the timed chip batches under cProfile and reports the functions with the
largest own time and cumulative time (``chip_profile``). Torch uses one thread per core by
default (``--threads``), as the chip engine does for its trials; the two never run at once.
Prints ``RESULT {json}`` as its last line; ``--quick`` times 5 mock batches and 1 chip
batch.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import platform
import pstats
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from pynn_brainscales2.errors import BrainScaleS2Error
from pynn_brainscales2.snn.datasets import MNIST

ROOT = Path(__file__).resolve().parents[1]
BATCH = 100
EPOCH_BATCHES = 60_000 // BATCH


def _example():
    """The module ``examples/mnist.py`` (its model, augmentation and loss are what is timed)."""
    spec = importlib.util.spec_from_file_location("mnist_example", ROOT / "examples" / "mnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _trainer(ex, model, mode: str, seed: int):
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    coefficients = ex.COEFFICIENTS[mode]

    def step(images: torch.Tensor, labels: torch.Tensor) -> int:
        x = ex.augment(images.float() / 255.0, generator, 0.3)
        with parametrize.cached():  # as the example: the saturating map once per batch
            scores, h_hidden = model(x)
            loss = loss_fn(scores, labels) + ex.regularisers(model, scores, h_hidden, coefficients)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return int((scores.argmax(1) == labels).sum())

    return step


def _batches(data: MNIST, n: int, seed: int):
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    for k in range(n):
        idx = order[(k * BATCH) % len(data) :][:BATCH]
        yield data.images[idx], data.labels[idx]


def time_mode(ex, data, mode: str, n_batches: int, seed: int, warmup: bool, profile: bool = False) -> dict:
    torch.manual_seed(seed)
    chip = None
    if mode == "chip":
        from cysim import VirtualChip

        chip = VirtualChip(seed=0)
    model = ex.MNISTSNN(mode, chip=chip)
    model.map_cap_to_chip_range()
    step = _trainer(ex, model, mode, seed)
    out = {}
    batches = _batches(data, n_batches + int(warmup), seed)
    if warmup:
        t0 = time.perf_counter()
        step(*next(batches))
        out["setup_s"] = round(time.perf_counter() - t0, 2)
    profiler = cProfile.Profile() if profile else None
    correct = 0
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    for x, y in batches:
        correct += step(x, y)
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - t0
    out.update(batch_s=elapsed / n_batches, epoch_s=elapsed / n_batches * EPOCH_BATCHES, batches=n_batches)
    out["train_accuracy"] = correct / (n_batches * BATCH)
    if profiler:
        out["profile"] = _profile_table(profiler, elapsed)
    return out


def _profile_table(profiler, elapsed: float, top: int = 15) -> dict:
    stats = pstats.Stats(profiler)
    rows = []
    for (path, line, name), (_, calls, own, cum, _) in stats.stats.items():
        where = f"{Path(path).name}:{line}({name})" if line else name
        rows.append((where, calls, own, cum))

    def table(key):
        return [
            {"function": w, "calls": c, "own_s": round(o, 3), "cumulative_s": round(cu, 3)}
            for w, c, o, cu in sorted(rows, key=key, reverse=True)[:top]
        ]

    return {
        "wall_s": round(elapsed, 2),
        "by_own_time": table(lambda r: r[2]),
        "by_cumulative": table(lambda r: r[3]),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--mock-batches", type=int, default=EPOCH_BATCHES, help="timed mock batches (600: an epoch)"
    )
    ap.add_argument("--chip-batches", type=int, default=10, help="timed chip batches, extrapolated to 600")
    ap.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads (default: one per core)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-chip", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the timed chip batches")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="5 mock batches, 1 chip batch")
    args = ap.parse_args(argv)
    if args.quick:
        args.mock_batches, args.chip_batches = 5, 1
    torch.set_num_threads(args.threads)
    ex = _example()
    data = MNIST(args.data_root, train=True)
    out = {
        "batch": BATCH,
        "epoch_batches": EPOCH_BATCHES,
        "steps_per_image": int(round(ex.RUNTIME_US / ex.DT_US)),
        "dt_us": ex.DT_US,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    mock = time_mode(ex, data, "mock", args.mock_batches, args.seed, warmup=False)
    out.update(
        mock_epoch_s=round(mock["epoch_s"], 1),
        mock_batch_s=round(mock["batch_s"], 4),
        mock_batches_measured=mock["batches"],
        mock_train_accuracy=mock["train_accuracy"],
    )
    if args.skip_chip:
        out.update(chip_epoch_s=None, chip_error="skipped (--skip-chip)")
    else:
        try:
            chip = time_mode(
                ex, data, "chip", args.chip_batches, args.seed, warmup=True, profile=args.profile
            )
        except BrainScaleS2Error as err:  # report why chip mode cannot run this network
            out.update(chip_epoch_s=None, chip_error=f"{type(err).__name__}: {err}")
        else:
            out.update(
                chip_epoch_s=round(chip["epoch_s"], 1),
                chip_batch_s=round(chip["batch_s"], 3),
                chip_batches_measured=chip["batches"],
                chip_epoch_extrapolated=chip["batches"] < EPOCH_BATCHES,
                chip_setup_s=chip["setup_s"],
                chip_train_accuracy=chip["train_accuracy"],
            )
            if "profile" in chip:
                out["chip_profile"] = chip["profile"]
            out["chip_over_mock"] = round(chip["epoch_s"] / mock["epoch_s"], 2)
    print("RESULT " + json.dumps(out))
    return out


if __name__ == "__main__":
    main()
