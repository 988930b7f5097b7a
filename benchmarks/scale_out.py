"""Scale-out: the same chip-mode training workload on a Dask cluster of 1 and of 2 workers.

The workload is fixed: ``--seeds`` short trainings of the Yin-Yang network of
``examples/yinyang.py`` (5 -> 120 LIF -> 3 LI, the example's own model class) in chip mode
on ``VirtualChip(seed=0)`` (realistic; calibrated once before timing, the calibration read
from the shared cache by every worker), each ``--steps`` optimiser steps of ``--batch``
samples (Adam, cross-entropy on the maximum over time), one torch thread per process. The
trainings are whole experiments: :func:`pynn_brainscales2.execution.parameter_sweep` maps
them over the workers of a ``dask.distributed.LocalCluster(n_workers=n,
threads_per_worker=1)``.

- ``seconds_1_worker``, ``seconds_2_workers``: the whole sweep, after a warm-up on every
  worker (one-time imports); ``speedup = seconds_1_worker / seconds_2_workers``;
  ``identical_losses``: every training's losses agree bit for bit between the two clusters
  (trial seeds are drawn per trial, not per worker).
- ``batch_split``: one training whose batches are split over the workers instead
  (``snn.Experiment(executor=client)``): only the chip runs are distributed; the torch
  part of each step (encoding, the model pass for the straight-through injection, the
  CADC read-back, backward) stays in this process, so its speed-up is bounded by the chip
  runs' share of a step (``chip_share``; Amdahl: ``1 / (1 - s/2)``).

To time a multi-machine cluster instead, pass its scheduler: ``--scheduler
tcp://host:8786`` (every worker needs this package and this repository's ``examples/``
at the same path, and ``$PYNN_BRAINSCALES2_CACHE`` on a shared directory, or each worker
calibrates once).

Prints ``RESULT {json}`` as its last line. ``--quick``: 2 trainings of 2 steps of 40
samples (for tests).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from pynn_brainscales2.snn.datasets import YinYang

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("yinyang_example", ROOT / "examples" / "yinyang.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def train(seed: int, steps: int, batch: int, dt: float, executor=None):
    """``steps`` optimiser steps in chip mode; returns (losses, seconds, chip seconds)."""
    import pynn_brainscales2 as sim

    torch.set_num_threads(1)
    ex = _example()
    torch.manual_seed(seed)
    model = ex.YinYangSNN("chip", dt, chip=sim.VirtualChip(seed=0))
    model.exp.executor = executor  # before the first pass: the chip runner is built then
    data = YinYang("train", size=batch * steps, seed=seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    t0 = time.perf_counter()
    for k in range(steps):
        x, y = data.features[k * batch : (k + 1) * batch], data.labels[k * batch : (k + 1) * batch]
        scores, _ = model(x)
        loss = loss_fn(scores, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    return losses, time.perf_counter() - t0, model.exp._runner.executor.run_seconds


def _warm(_):
    """One-time imports on a worker (the engine, torch, and the optimiser's first-use import
    of ``torch._dynamo``, about 3 s), so that the timed sweep measures the trainings."""
    import pynn_brainscales2  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    return os.getpid()


def sweep(client, seeds, steps, batch, dt):
    from pynn_brainscales2.execution import parameter_sweep

    client.run(_warm, None)
    t0 = time.perf_counter()
    params = [dict(seed=s, steps=steps, batch=batch, dt=dt) for s in seeds]
    out = parameter_sweep(train, params, executor=client, progress=False)
    return time.perf_counter() - t0, [o[0] for o in out]


def _cluster(n: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    )
    return cluster, Client(cluster)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4, help="trainings in the sweep")
    ap.add_argument("--steps", type=int, default=8, help="optimiser steps per training")
    ap.add_argument("--batch", type=int, default=100, help="samples (= chip trials) per step")
    ap.add_argument("--dt", type=float, default=0.1, help="grid step [us]")
    ap.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    ap.add_argument("--no-batch-split", action="store_true", help="skip the batch-split measurement")
    ap.add_argument("--quick", action="store_true", help="2 trainings of 2 steps of 40 samples (for tests)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.batch = 2, 2, 40
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    out = {
        "workload": f"{args.seeds} Yin-Yang 5-120-3 chip-mode trainings of {args.steps} steps x {args.batch} "
        f"samples, dt {args.dt} us",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    train(0, 1, 8, args.dt)  # calibration into the cache before anything is timed
    if args.scheduler:
        from distributed import Client

        with Client(args.scheduler) as client:
            n = len(client.scheduler_info()["workers"])
            t, _ = sweep(client, seeds, args.steps, args.batch, args.dt)
        out.update({"scheduler": args.scheduler, f"seconds_{n}_workers": round(t, 3)})
        print("RESULT " + json.dumps(out))
        return out
    times, losses = {}, {}
    for n in (1, 2):
        cluster, client = _cluster(n)
        try:
            times[n], losses[n] = sweep(client, seeds, args.steps, args.batch, args.dt)
            if n == 2 and not args.no_batch_split:
                local, t_local, chip_local = train(0, args.steps, args.batch, args.dt)
                split, t_split, _ = train(0, args.steps, args.batch, args.dt, executor=client)
                out["batch_split"] = {
                    "seconds_in_process": round(t_local, 3),
                    "seconds_2_workers": round(t_split, 3),
                    "speedup": round(t_local / t_split, 3),
                    "chip_share": round(chip_local / t_local, 3),
                    "identical_losses": local == split,
                }
        finally:
            client.close()
            cluster.close()
    out["seconds_1_worker"] = round(times[1], 3)
    out["seconds_2_workers"] = round(times[2], 3)
    out["speedup"] = round(times[1] / times[2], 3)
    out["identical_losses"] = losses[1] == losses[2]
    print("RESULT " + json.dumps(out))
    return out


if __name__ == "__main__":
    main()
