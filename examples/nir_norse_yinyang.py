"""A Yin-Yang network trained in Norse, moved to the virtual chip through NIR.

1. Norse (pure software): 5 inputs -> ``Linear`` -> ``LIFCell`` (hidden) -> ``Linear`` ->
   ``LIBoxCell`` (3 read-out integrators), Euler steps of ``dt``, max-over-time read-out,
   cross-entropy, Adam.
2. Norse's own export, ``norse.torch.to_nir(model, sample, dt=dt)``, brought into NIR's
   convention by ``normalise_norse_graph`` (Norse 1.1 writes ``tau * dt``), written to and
   read from an HDF5 file (``nir.write``/``nir.read``).
3. ``import_nir(graph, "chip")``: the same network as an ``snn`` model in chip mode on the
   realistic virtual chip (``--mode mock``: simulated in torch), evaluated on the test set.
4. A short chip-in-the-loop fine-tune of the imported weights (``--finetune-epochs``).

The input is the time-to-first-spike code of ``examples/yinyang.py`` (features between 2 and
26 ms of model time = us on the chip, bias spike at 0, 38 ms per sample).

    python examples/nir_norse_yinyang.py --mode chip --epochs 20 --finetune-epochs 5 --seed 0

The last line printed is ``RESULT {json}`` with the test accuracies of Norse, of the imported
network and after fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from pynn_brainscales2.io.nir import import_nir, normalise_norse_graph
from pynn_brainscales2.snn import losses
from pynn_brainscales2.snn import transforms as T
from pynn_brainscales2.snn.datasets import YinYang

RUNTIME_MS = 38.0  # per sample, model time (= us on the chip at speed-up 1000)
T_EARLY_MS, T_LATE_MS, T_BIAS_MS = 2.0, 26.0, 0.0
TAU_S = 6e-3  # hidden membrane and synaptic time constants [s of model time]
READOUT_TAU_S = 12e-3  # read-out membrane: its peaks decay little between two CADC samples (1.7 us)


def encode(features: torch.Tensor, dt_ms: float) -> torch.Tensor:
    """Spikes ``[time, batch, 5]`` on a grid of ``dt_ms`` (the same for Norse and the chip)."""
    return T.ttfs_coordinates(features, dt_ms, RUNTIME_MS, T_EARLY_MS, T_LATE_MS, bias_us=T_BIAS_MS)


def norse_model(hidden: int, dt_s: float, seed: int, readout_tau_s: float = READOUT_TAU_S):
    """The Norse network (``norse.torch.SequentialState``) with its initial weights."""
    import norse.torch as norse

    torch.manual_seed(seed)
    p = norse.LIFParameters(
        tau_syn_inv=torch.as_tensor(1.0 / TAU_S),
        tau_mem_inv=torch.as_tensor(1.0 / TAU_S),
        v_th=torch.as_tensor(1.0),
        method="tanh",
        alpha=torch.as_tensor(20.0),
    )
    model = norse.SequentialState(
        torch.nn.Linear(5, hidden, bias=False),
        norse.LIFCell(p, dt=dt_s),
        torch.nn.Linear(hidden, 3, bias=False),
        norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / readout_tau_s)), dt=dt_s),
    )
    with torch.no_grad():  # current jumps [threshold units]: PSPs of a few tenths of the threshold
        model[0].weight.normal_(0.9, 1.5)
        model[2].weight.normal_(2.0, 4.0)
    return model


def norse_scores(model, features: torch.Tensor, dt_ms: float) -> torch.Tensor:
    """Maximum over time of the read-out membranes ``[batch, 3]``."""
    spikes = encode(features, dt_ms)
    state, best = None, None
    for t in range(spikes.shape[0]):
        v, state = model(spikes[t], state)
        best = v if best is None else torch.maximum(best, v)
    return best


def predictions(scores_of, data, batch: int = 500) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [scores_of(data.features[k : k + batch]).argmax(1) for k in range(0, len(data), batch)]
        )


def accuracy(scores_of, data, batch: int = 500) -> float:
    return float((predictions(scores_of, data, batch) == data.labels).double().mean())


def paired_gap(norse_of, imported_of, data) -> dict:
    """Both networks' accuracies on ``data``, the gap (imported - Norse) and its standard
    error from the samples on which their decisions differ."""
    p_norse, p_imported = predictions(norse_of, data), predictions(imported_of, data)
    diff = (p_imported == data.labels).double() - (p_norse == data.labels).double()
    return {
        "samples": len(data),
        "seed": data.seed,
        "norse_accuracy": float((p_norse == data.labels).double().mean()),
        "imported_accuracy": float((p_imported == data.labels).double().mean()),
        "gap": float(diff.mean()),
        "gap_se": float(diff.std() / len(data) ** 0.5),
        "agreement": float((p_norse == p_imported).double().mean()),
    }


def train_norse(
    hidden=60, dt_ms=0.5, epochs=8, batch=500, lr=5e-2, seed=0, train_size=None, readout_tau_s=READOUT_TAU_S
):
    """Train the Norse network; returns (model, test accuracy, seconds)."""
    model = norse_model(hidden, dt_ms * 1e-3, seed, readout_tau_s)
    train, test = YinYang("train", size=train_size), YinYang("test")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        for k in range(0, len(train), batch):
            idx = order[k : k + batch]
            loss = torch.nn.functional.cross_entropy(
                norse_scores(model, train.features[idx], dt_ms), train.labels[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        schedule.step()
    seconds = time.perf_counter() - t0
    return model, accuracy(lambda x: norse_scores(model, x, dt_ms), test), seconds


def export_norse(model, dt_ms: float, path: Path | None = None, discretisation: str = "ode"):
    """Norse's NIR export, normalised (``discretisation``: see ``normalise_norse_graph``);
    written to and read back from ``path`` if given."""
    import nir
    import norse.torch as norse

    raw = norse.to_nir(model, torch.zeros(1, 5), dt=dt_ms * 1e-3)
    graph = normalise_norse_graph(raw, dt_ms * 1e-3, discretisation=discretisation)
    if path is not None:
        nir.write(path, graph)
        graph = nir.read(path)
    return graph


def imported_scores(model, features: torch.Tensor) -> torch.Tensor:
    out = model(encode(features, model.experiment.dt), runtime_us=RUNTIME_MS)
    return losses.max_over_time(next(iter(out.values())))


def finetune(
    model, epochs: int, batch: int = 100, lr: float = 5e-3, seed: int = 0, train_size=None, test=None
) -> list[float]:
    """Train the imported model's weights with its experiment in the loop; test accuracy per epoch."""
    train, test = YinYang("train", size=train_size), test if test is not None else YinYang("test")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    generator = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        for k in range(0, len(train), batch):
            idx = order[k : k + batch]
            loss = torch.nn.functional.cross_entropy(
                imported_scores(model, train.features[idx]), train.labels[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        schedule.step()
        curve.append(accuracy(lambda x: imported_scores(model, x), test))
    return curve


def plot(result: dict, path: Path) -> None:
    """Test accuracy of Norse, of the imported network and along the fine-tune."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 1.4]})
    names = ["Norse", f"imported\n({result['mode']})"]
    values = [result["norse_test_accuracy"], result["imported_test_accuracy"]]
    if result["finetuned_test_accuracy"] is not None:
        names.append(f"fine-tuned\n({result['finetune_epochs']} epochs)")
        values.append(result["finetuned_test_accuracy"])
    bars = ax1.bar(names, [100 * v for v in values], color=["0.5", "tab:blue", "tab:green"][: len(values)])
    for bar, v in zip(bars, values, strict=True):
        ax1.text(bar.get_x() + bar.get_width() / 2, 100 * v + 0.5, f"{100 * v:.1f}", ha="center")
    low = min(100 * v for v in values)
    ax1.set_ylim(max(0.0, low - 15), 100)
    ax1.set_ylabel("test accuracy [%]")
    ax1.set_title("Yin-Yang through NIR")
    curve = [result["imported_test_accuracy"]] + result["finetune_curve"]
    ax2.plot(range(len(curve)), [100 * v for v in curve], "o-", color="tab:green", label=result["mode"])
    ax2.axhline(100 * result["norse_test_accuracy"], color="0.5", ls="--", label="Norse")
    ax2.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax2.set_xlabel("fine-tune epoch (0: as imported)")
    ax2.set_ylabel("test accuracy [%]")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["mock", "chip"], default="chip", help="import target")
    parser.add_argument("--epochs", type=int, default=20, help="Norse training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=60)
    parser.add_argument(
        "--dt", type=float, default=0.5, help="Norse step and import grid [ms model = us chip]"
    )
    parser.add_argument("--batch-size", type=int, default=500, help="Norse batch")
    parser.add_argument("--lr", type=float, default=5e-2, help="Norse learning rate")
    parser.add_argument("--readout-tau", type=float, default=READOUT_TAU_S * 1e3, help="read-out tau [ms]")
    parser.add_argument("--finetune-lr", type=float, default=5e-3)
    parser.add_argument("--chip-seed", type=int, default=0)
    parser.add_argument(
        "--discretisation",
        choices=["ode", "euler"],
        default="ode",
        help="normalise_norse_graph's reading of Norse's time constants (euler: its Euler steps)",
    )
    parser.add_argument("--nir", type=Path, default=None, help="where to write the NIR file")
    parser.add_argument(
        "--large-test",
        type=int,
        default=0,
        help="also compare Norse and the imported network on this many fresh samples (paired gap)",
    )
    parser.add_argument("--large-test-seed", type=int, default=4321, help="seed of those samples")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/nir_norse_yinyang.png"), help="figure")
    parser.add_argument(
        "--quick", action="store_true", help="1000 training samples, 1000 test samples (for tests)"
    )
    args = parser.parse_args(argv)
    size = 1000 if args.quick else None
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, norse_acc, train_s = train_norse(
        args.hidden,
        args.dt,
        args.epochs,
        args.batch_size,
        args.lr,
        args.seed,
        train_size=size,
        readout_tau_s=args.readout_tau * 1e-3,
    )
    print(f"Norse: test accuracy {norse_acc:.3f} after {args.epochs} epochs ({train_s:.0f} s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        graph = export_norse(model, args.dt, args.nir or Path(tmp) / "yinyang.nir", args.discretisation)
    chip = None
    if args.mode == "chip":
        from cysim import VirtualChip

        chip = VirtualChip(seed=args.chip_seed)
    test = YinYang("test", size=size)
    imported = import_nir(graph, args.mode, chip=chip)
    imported_acc = accuracy(lambda x: imported_scores(imported, x), test)
    print(f"imported ({args.mode}): test accuracy {imported_acc:.3f}", flush=True)
    large = None
    if args.large_test:
        large = paired_gap(
            lambda x: norse_scores(model, x, args.dt),
            lambda x: imported_scores(imported, x),
            YinYang("test", size=args.large_test, seed=args.large_test_seed),
        )
        print(
            f"{args.large_test} fresh samples: Norse {large['norse_accuracy']:.4f}, imported "
            f"{large['imported_accuracy']:.4f}, gap {100 * large['gap']:+.2f} +- {100 * large['gap_se']:.2f} points",
            flush=True,
        )
    curve = finetune(
        imported, args.finetune_epochs, lr=args.finetune_lr, seed=args.seed, train_size=size, test=test
    )
    if curve:
        print(
            f"fine-tuned ({args.mode}, {args.finetune_epochs} epochs): test accuracy {curve[-1]:.3f}",
            flush=True,
        )
    result = {
        "mode": args.mode,
        "seed": args.seed,
        "epochs": args.epochs,
        "finetune_epochs": args.finetune_epochs,
        "hidden": args.hidden,
        "dt_ms": args.dt,
        "discretisation": args.discretisation,
        "norse_test_accuracy": norse_acc,
        "imported_test_accuracy": imported_acc,
        "large_test": large,
        "finetuned_test_accuracy": curve[-1] if curve else None,
        "finetune_curve": [round(a, 4) for a in curve],
        "norse_train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
        "figure": str(args.out),
    }
    plot(result, args.out)
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
