"""Speed of training: one epoch of the Yin-Yang network, torch bridge vs Norse.

The network is that of ``examples/yinyang.py``: 5 inputs (4 coordinates between 2 and
26 us, bias spike at 0 us) -> 120 LIF -> 3 LI, 38 us per sample on a 0.5 us grid (76
steps), max-over-time read-out, cross-entropy, Adam, **batch 100**, 5000 training
samples (50 steps of the optimiser). Timed, for each:

- ``mock_epoch_s``: ``snn.Experiment(mock=True)`` (dynamics in torch), the example's
  model class itself;
- ``chip_epoch_s``: ``snn.Experiment(mock=False)`` on ``VirtualChip(seed=0)`` (realistic
  chip), the example's model class; ``null`` with ``chip_error`` when chip mode is not
  available;
- ``norse_epoch_s``: the same architecture in Norse (pure software: ``nn.Linear`` ->
  ``norse.torch.LIF`` -> ``nn.Linear`` -> ``norse.torch.LI``, forward Euler, SuperSpike
  surrogate), on the same inputs.

Each is the median over ``--repeats`` epochs after one warm-up epoch, on ``--threads``
torch threads (default 1). Accuracy is not the point (one epoch), but the JSON reports
each run's training accuracy in its last epoch, so a broken model shows.

Norse is not a dependency of the project; install it without its dependencies (it
would pull torchvision and a CUDA build of torch)::

    .venv/bin/pip install --no-deps norse && .venv/bin/pip install nir nirtorch

Prints ``RESULT {json}`` as its last line. ``--quick`` uses 500 samples and no repeats
(for tests).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from pynn_brainscales2.snn import transforms as T
from pynn_brainscales2.snn.datasets import YinYang

ROOT = Path(__file__).resolve().parents[1]
BATCH = 100


def _example():
    """The module ``examples/yinyang.py`` (its model class is what is timed)."""
    spec = importlib.util.spec_from_file_location("yinyang_example", ROOT / "examples" / "yinyang.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class NorseYinYang(nn.Module):
    """5 -> 120 LIF -> 3 LI in Norse, tau_mem = tau_syn = 6 us, dt = 0.5 us."""

    def __init__(self, dt: float, hidden: int = 120):
        super().__init__()
        import norse.torch as norse

        self.dt = dt
        tau_inv = torch.as_tensor(1.0 / 6.0)
        self.fc_hidden = nn.Linear(5, hidden, bias=False)
        self.lif = norse.LIF(
            norse.LIFParameters(
                tau_syn_inv=tau_inv, tau_mem_inv=tau_inv, v_th=torch.as_tensor(1.0), alpha=50.0
            ),
            dt=dt,
        )
        self.fc_out = nn.Linear(hidden, 3, bias=False)
        self.li = norse.LI(norse.LIParameters(tau_syn_inv=tau_inv, tau_mem_inv=tau_inv), dt=dt)
        with torch.no_grad():
            # Norse's current is in potential units (dv = dt/tau (i - v)): our weights x tau
            self.fc_hidden.weight.normal_(0.15 * 6.0, 0.25 * 6.0)
            self.fc_out.weight.normal_(0.05 * 6.0, 0.1 * 6.0)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        z, _ = self.lif(self.fc_hidden(spikes))
        v, _ = self.li(self.fc_out(z))
        return v.amax(0)


def _epoch(step, data, generator) -> float:
    """One epoch of ``step(x, y) -> n_correct`` over ``data`` in batches of BATCH; accuracy."""
    order = torch.randperm(len(data), generator=generator)
    correct = 0
    for k in range(0, len(data), BATCH):
        idx = order[k : k + BATCH]
        correct += step(data.features[idx], data.labels[idx])
    return correct / len(data)


def _time_epochs(step, data, repeats: int, seed: int) -> tuple[float, float, list]:
    generator = torch.Generator().manual_seed(seed)
    _epoch(step, data, generator)  # warm-up
    times, acc = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        acc = _epoch(step, data, generator)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), acc, times


def _trainer(model, forward):
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        scores = forward(x)
        loss = loss_fn(scores, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return int((scores.argmax(1) == y).sum())

    return step


def time_bridge(mode: str, data, repeats: int, seed: int, dt: float):
    ex = _example()
    torch.manual_seed(seed)
    chip_kw = {}
    if mode == "chip":
        import pynn_brainscales2 as sim

        chip_kw = {"chip": sim.VirtualChip(seed=0)}
    try:
        model = ex.YinYangSNN(mode, dt, **chip_kw)
    except TypeError:  # the example's class takes no chip argument
        model = ex.YinYangSNN(mode, dt)
    return _time_epochs(_trainer(model, lambda x: model(x)[0]), data, repeats, seed)


def time_norse(data, repeats: int, seed: int, dt: float):
    torch.manual_seed(seed)
    model = NorseYinYang(dt)
    ex = _example()

    def forward(x):
        spikes = T.ttfs_coordinates(x, dt, ex.RUNTIME_US, ex.T_EARLY_US, ex.T_LATE_US, bias_us=ex.T_BIAS_US)
        return model(spikes)

    return _time_epochs(_trainer(model, forward), data, repeats, seed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per mode (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--dt", type=float, default=0.5, help="grid step [us] (mock and Norse)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-chip", action="store_true")
    ap.add_argument("--chip-dt", type=float, default=None, help="grid step of chip mode [us] (default: --dt)")
    ap.add_argument(
        "--step-loop",
        action="store_true",
        help="mock mode without the fused LIF/LI loop (integrate(fast=False)), for before/after comparisons",
    )
    ap.add_argument("--quick", action="store_true", help="500 samples, one timed epoch (for tests)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.step_loop:
        import functools

        from pynn_brainscales2.snn import experiment
        from pynn_brainscales2.snn.functional.neurons import integrate

        experiment.integrate = functools.partial(integrate, fast=False)
    size = 500 if args.quick else None
    repeats = 1 if args.quick else args.repeats
    data = YinYang("train", size=size)
    out = {
        "batch": BATCH,
        "samples": len(data),
        "steps_per_sample": int(round(38.0 / args.dt)),
        "dt_us": args.dt,
        "threads": args.threads,
        "mock_loop": "step functions" if args.step_loop else "fused",
        "repeats": repeats,
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }

    try:
        import norse

        t, acc, times = time_norse(data, repeats, args.seed, args.dt)
        out.update(
            norse_epoch_s=round(t, 3), norse_train_accuracy=acc, norse_times_s=[round(x, 3) for x in times]
        )
        out["norse"] = getattr(norse, "__version__", "?")
    except ImportError as err:
        out.update(norse_epoch_s=None, norse_error=f"Norse not installed ({err}); see the docstring.")

    t, acc, times = time_bridge("mock", data, repeats, args.seed, args.dt)
    out.update(mock_epoch_s=round(t, 3), mock_train_accuracy=acc, mock_times_s=[round(x, 3) for x in times])

    out["chip_epoch_s"] = None
    if args.skip_chip:
        out["chip_error"] = "skipped (--skip-chip)"
    else:
        out["chip_dt_us"] = args.chip_dt or args.dt
        try:
            t, acc, times = time_bridge("chip", data, repeats, args.seed, args.chip_dt or args.dt)
            out.update(
                chip_epoch_s=round(t, 3), chip_train_accuracy=acc, chip_times_s=[round(x, 3) for x in times]
            )
        except Exception as err:  # chip mode still being wired: report why, keep the other numbers
            out["chip_error"] = f"{type(err).__name__}: {err}"

    if out.get("norse_epoch_s"):
        out["mock_over_norse"] = round(out["mock_epoch_s"] / out["norse_epoch_s"], 3)
        if out["chip_epoch_s"] is not None:
            out["chip_over_norse"] = round(out["chip_epoch_s"] / out["norse_epoch_s"], 3)
    print("RESULT " + json.dumps(out))
    return out


if __name__ == "__main__":
    main()
