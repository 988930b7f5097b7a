"""Memory and time per training batch: EventProp vs surrogate-gradient BPTT.

The Yin-Yang network of ``examples/yinyang.py`` (5 inputs, 120 LIF, 3 outputs, tau 6 us, 38 us
per sample, batch 50, mock mode), one training step (forward, backward, Adam) per batch, at
100, 1,000 and 10,000 time steps per sample (grid ``dt = 38 us / steps``; the input spikes
move to the finer grid, the network and its weights stay the same):

- ``surrogate``: LI outputs, maximum over time, cross-entropy, BPTT through the fused LIF/LI
  loop (``gradient="surrogate"``, the default);
- ``eventprop_maxover``: the same network and loss with ``gradient="eventprop"`` (exact
  event-based forward, adjoint backward);
- ``eventprop_ttfs``: EventProp with LIF outputs and the time-to-first-spike loss (the
  example's default for EventProp).

Every configuration runs in its own process. ``peak_mb`` is the growth of the resident set
during the first training step (``ru_maxrss`` after it minus the resident set before it, with
the model and the batch's input spikes already in memory); ``batch_s`` the median time of the
following ``--repeats`` steps. Prints ``RESULT {json}`` as its last line.

    .venv/bin/python benchmarks/eventprop.py --threads 1
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_US = 38.0
METHODS = ("surrogate", "eventprop_maxover", "eventprop_ttfs")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def worker(method: str, steps: int, batch: int, repeats: int, threads: int, seed: int) -> dict:
    import torch

    from pynn_brainscales2.snn import losses
    from pynn_brainscales2.snn.datasets import YinYang

    torch.set_num_threads(threads)
    spec = importlib.util.spec_from_file_location("yinyang_example", ROOT / "examples" / "yinyang.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    torch.manual_seed(seed)
    dt = RUNTIME_US / steps
    gradient = "surrogate" if method == "surrogate" else "eventprop"
    loss_kind = "ttfs" if method == "eventprop_ttfs" else "maxover"
    kw = dict(out_mean=0.01, out_std=0.01) if loss_kind == "ttfs" else {}
    model = ex.YinYangSNN("mock", dt, gradient=gradient, loss=loss_kind, **kw)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = YinYang("train", size=batch * (repeats + 1))
    batches = [(data.features[k : k + batch], data.labels[k : k + batch]) for k in range(0, len(data), batch)]
    encoded = [model.encode(x) for x, _ in batches]  # the input spikes, [steps, batch, 5]

    def step(k):
        x, y = batches[k]
        model.encode = lambda _features, k=k: encoded[k]
        scores, _ = model(x)
        if loss_kind == "ttfs":
            loss = losses.ttfs_cross_entropy(-scores, y, 0.5, 3e-3, 6.4)
        else:
            loss = torch.nn.functional.cross_entropy(scores, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return float(loss)

    gc.collect()
    rss0, maxrss0 = _rss_mb(), _maxrss_mb()
    t0 = time.perf_counter()
    loss0 = step(0)
    first_s = time.perf_counter() - t0
    peak = _maxrss_mb()
    times = []
    for k in range(1, repeats + 1):
        t0 = time.perf_counter()
        step(k)
        times.append(time.perf_counter() - t0)
    return {
        "method": method,
        "steps": steps,
        "dt_us": dt,
        "batch": batch,
        "peak_mb": round(peak - rss0, 1),
        "rss_before_mb": round(rss0, 1),
        "maxrss_mb": round(peak, 1),
        "maxrss_before_mb": round(maxrss0, 1),
        "first_batch_s": round(first_s, 3),
        "batch_s": round(statistics.median(times), 4),
        "times_s": [round(t, 4) for t in times],
        "loss": round(loss0, 4),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="timed batches after the first")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        out = worker(args.worker[0], int(args.worker[1]), args.batch, args.repeats, args.threads, args.seed)
        print("WORKER " + json.dumps(out))
        return out

    import torch

    configs = []
    for steps in args.steps:
        for method in args.methods:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                method,
                str(steps),
                "--batch",
                str(args.batch),
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
                "--seed",
                str(args.seed),
            ]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("WORKER ")]
            if proc.returncode != 0 or not lines:
                res = {"method": method, "steps": steps, "error": proc.stderr.strip().splitlines()[-1:]}
            else:
                res = json.loads(lines[-1][len("WORKER ") :])
            print(json.dumps(res), flush=True)
            configs.append(res)
    summary = {}
    for steps in args.steps:
        row = {c["method"]: c for c in configs if c["steps"] == steps and "error" not in c}
        if "surrogate" in row:
            for m in ("eventprop_maxover", "eventprop_ttfs"):
                if m in row:
                    summary[f"{m}_vs_surrogate_{steps}"] = {
                        "memory_ratio": round(row[m]["peak_mb"] / max(row["surrogate"]["peak_mb"], 1e-3), 4),
                        "time_ratio": round(row[m]["batch_s"] / row["surrogate"]["batch_s"], 3),
                    }
    result = {
        "batch": args.batch,
        "network": "5-120-3 Yin-Yang, 38 us per sample, mock mode",
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "configs": configs,
        "summary": summary,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
