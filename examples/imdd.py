"""Equalise and demap a simulated IM/DD optical link (PAM4, 112 GBd, 4 km) with a spiking network.

The link is :class:`pynn_brainscales2.snn.datasets.IMDD`; every decision sees a window of 7
received samples. Each sample is encoded by 10 Gaussian receptive fields (reference points
evenly spread over the received range) into spike latencies between 0 and ``--t-late`` us:
70 inputs -> 40 LIF -> 4 LI, ``tau_mem = tau_syn = 6 us``, 30 us per decision. The class
score is each output's maximum membrane over time; loss: cross-entropy over the 4 symbols;
the decided symbol gives two Gray bits. One network is trained over the whole range of
noise levels (each block of 10,000 symbols draws one level of the sweep) and then tested
at every level; the baseline is the linear MMSE equaliser on the same window, fitted per
noise level.

    python examples/imdd.py --mode mock --seed 0          # 30 x 500 steps of 200 symbols
    python examples/imdd.py --mode chip --seed 0 --init results/imdd/mock_seed0.pt \\
        --figure docs/figures/imdd_ber.png                  # 4 x 100 steps, chip in the loop

Chip mode (``snn.Experiment(mock=False)``: the virtual chip runs every forward pass, the
gradient follows the model) fine-tunes the weights of a mock run (``--init``); the hidden
weights stay within 0.29 pu/us in both modes, so that every connection fits one synapse row.

A BER is counted on fresh test symbols until ``--min-errors`` bit errors (default 200) or
``--max-symbols`` symbols; with fewer errors the 95 % Clopper-Pearson interval is quoted.
The last line printed is ``RESULT {json}`` with the lists ``noise_db``, ``ber_snn``,
``ber_lmmse`` (one entry per noise level) and the error counts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pynn_brainscales2 import snn
from pynn_brainscales2.snn import losses
from pynn_brainscales2.snn import transforms as T
from pynn_brainscales2.snn.datasets import IMDD
from pynn_brainscales2.snn.imdd import LMMSE, bit_errors, clopper_pearson

RESULTS = Path(__file__).resolve().parents[1] / "results" / "imdd"  # one JSON (+ weights) per run
RUNTIME_US = 30.0
W_HIDDEN_MAX = 0.29  # [pu/us]: with the chip's x2 headroom, 70 inputs fit one synapse row each
#: published software SNN (arXiv 2302.14726): noise [dB] -> BER
PUBLISHED = {-20: 7.1e-4, -18: 3.0e-3, -17: 5.9e-3}


class IMDDSNN(nn.Module):
    """7 taps x ``refs`` receptive fields -> ``hidden`` LIF -> 4 LI; scores: max over time."""

    def __init__(
        self,
        mode: str,
        dt: float,
        chip=None,
        taps: int = 7,
        refs: int = 10,
        hidden: int = 40,
        ref_range: tuple[float, float] = (0.0, 6.5),
        width: float | None = None,
        t_late_us: float = 15.0,
        in_mean: float = 0.02,
        in_std: float = 0.08,
        out_std: float = 0.1,
    ):
        super().__init__()
        self.exp = snn.Experiment(mock=(mode == "mock"), dt=dt, chip=chip)
        self.dt, self.t_late_us = dt, t_late_us
        self.register_buffer("centers", torch.linspace(*ref_range, refs))
        self.width = float(self.centers[1] - self.centers[0]) if width is None else width
        tau = dict(tau_mem_us=6.0, tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)
        self.input = snn.InputNeuron(taps * refs, self.exp, name="input")
        self.syn_hidden = snn.Synapse(taps * refs, hidden, self.exp, mean=in_mean, std=in_std, name="in->hid")
        self.hidden = snn.LIF(hidden, self.exp, name="hidden", **tau)
        self.syn_out = snn.Synapse(hidden, 4, self.exp, std=out_std, name="hid->out")
        self.out = snn.LI(4, self.exp, name="output", **tau)
        self.clamp_weights()

    def clamp_weights(self) -> None:
        """Keep the hidden weights within what one synapse row per connection realises."""
        with torch.no_grad():
            self.syn_hidden.weight.clamp_(-W_HIDDEN_MAX, W_HIDDEN_MAX)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return T.receptive_field(x, self.centers, self.width, self.dt, RUNTIME_US, 0.0, self.t_late_us)

    def forward(self, x: torch.Tensor):
        h_hidden = self.hidden(self.syn_hidden(self.input(self.encode(x))))
        h_out = self.out(self.syn_out(h_hidden))
        snn.run(self.exp, RUNTIME_US)
        return losses.max_over_time(h_out), h_hidden


def count_errors(decide, link: IMDD, seed: int, min_errors: int, max_symbols: int, batch: int):
    """Bit errors and bits of ``decide(windows) -> symbols`` on fresh blocks of ``link``, until
    ``min_errors`` errors or ``max_symbols`` symbols."""
    generator = torch.Generator().manual_seed(seed)
    errors = symbols = 0
    while errors < min_errors and symbols < max_symbols:
        x, k = link.block(generator)
        for i in range(0, k.shape[0], batch):
            errors += bit_errors(decide(x[i : i + batch]), k[i : i + batch])
            symbols += k[i : i + batch].shape[0]
            if symbols >= max_symbols:
                break
    return errors, 2 * symbols


def _entry(errors: int, bits: int) -> dict:
    lo, hi = clopper_pearson(errors, bits)
    return {"errors": errors, "bits": bits, "ber": errors / bits, "ci95": [lo, hi]}


def _load(path: Path) -> dict:
    """A result: a JSON file, or a log whose last ``RESULT `` line holds it."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :]) if lines else json.loads(Path(path).read_text())


def plot_ber(results: list[dict], path: Path) -> None:
    """BER over noise for every result (SNN per mode) and the LMMSE baseline, 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    style = {
        "mock": ("C0", "o", "SNN, simulation (mock)"),
        "chip": ("C3", "s", "SNN, virtual chip in the loop"),
    }

    def draw(db, entries, colour, marker, label, ls="-"):
        """Points with errors: BER and 95 % interval; points without: the interval's upper end (v)."""
        seen = [(d, e) for d, e in zip(db, entries, strict=True) if e["errors"] > 0]
        ber = torch.tensor([e["ber"] for _, e in seen])
        lo, hi = (torch.tensor([e["ci95"][j] for _, e in seen]) for j in (0, 1))
        ax.errorbar([d for d, _ in seen], ber, yerr=[ber - lo, hi - ber], color=colour, marker=marker, ls=ls,
                    ms=4, capsize=2, label=label)  # fmt: skip
        for d, e in zip(db, entries, strict=True):
            if e["errors"] == 0:
                ax.plot([d], [e["ci95"][1]], "v", color=colour, mfc="none", ms=7)

    for r in results:
        colour, marker, label = style[r["mode"]]
        draw(r["noise_db"], r["snn"], colour, marker, label)
    draw(results[0]["noise_db"], results[0]["lmmse"], "k", "^", "linear MMSE equaliser", "--")
    ax.plot(list(PUBLISHED), list(PUBLISHED.values()), "x", color="C2", ms=7, label="published software SNN")
    ax.plot([], [], "v", color="0.3", mfc="none", label="no error seen: upper end of 95 % interval")
    ax.set_yscale("log")
    ax.set_xlabel("noise power relative to signal [dB]")
    ax.set_ylabel("bit-error rate")
    ax.set_title("PAM4 IM/DD link, 112 GBd, 4 km, 1270 nm")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["mock", "chip"], default="mock")
    parser.add_argument("--epochs", type=int, default=None, help="default: 30 (mock), 4 (chip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps", type=int, default=None, help="mini-batches per epoch; 500 (mock), 100 (chip)"
    )
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--lr", type=float, default=None, help="default: 3e-3 (mock), 1e-3 (chip)")
    parser.add_argument("--lr-min", type=float, default=None, help="end of the cosine schedule; 1e-4, 1e-5")
    parser.add_argument("--dt", type=float, default=0.5, help="grid step [us]")
    parser.add_argument("--t-late", type=float, default=15.0, help="latest input spike [us]")
    parser.add_argument("--noise-db", type=float, nargs="+", default=[-24, -23, -22, -21, -20, -19, -18, -17])
    parser.add_argument("--train-noise", type=float, nargs="+", default=None, help="default: the sweep")
    parser.add_argument("--init", type=Path, help="start from these weights (a .pt of a previous run)")
    parser.add_argument("--chip-seed", type=int, default=0, help="chip mode: seed of the VirtualChip")
    parser.add_argument("--min-errors", type=int, default=200, help="test: stop counting at this many errors")
    parser.add_argument("--max-symbols", type=int, default=None, help="test: most symbols per noise level")
    parser.add_argument(
        "--val-symbols", type=int, default=None, help="validation symbols at -20 dB per epoch"
    )
    parser.add_argument("--lmmse-symbols", type=int, default=200_000, help="training symbols per level")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-save", action="store_true", help="do not write results/imdd/")
    parser.add_argument("--figure", type=Path, help="BER plot of all saved runs (results/imdd/*.json)")
    parser.add_argument("--figure-from", type=Path, nargs="+", help="no training: plot these results")
    args = parser.parse_args(argv)
    if args.figure_from:
        plot_ber([_load(f) for f in args.figure_from], args.figure or Path("imdd_ber.png"))
        return None
    chip_mode = args.mode == "chip"
    for name, mock_value, chip_value in [
        ("epochs", 30, 4),
        ("steps", 500, 100),
        ("lr", 3e-3, 1e-3),
        ("lr_min", 1e-4, 1e-5),
    ]:
        if getattr(args, name) is None:
            setattr(args, name, chip_value if chip_mode else mock_value)
    if args.max_symbols is None:
        args.max_symbols = 300_000 if args.mode == "mock" else 60_000
    if args.val_symbols is None:
        args.val_symbols = 20_000 if args.mode == "mock" else 10_000
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    chip = None
    if args.mode == "chip":
        from cysim import VirtualChip

        chip = VirtualChip(seed=args.chip_seed)
    model = IMDDSNN(args.mode, args.dt, chip=chip, t_late_us=args.t_late)
    if args.init:
        model.load_state_dict(torch.load(args.init))
        model.clamp_weights()
    train_levels = args.train_noise or args.noise_db
    links = {db: IMDD(noise_db=db) for db in sorted(set(train_levels) | set(args.noise_db))}
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=max(args.epochs * args.steps, 1), eta_min=args.lr_min
    )
    generator = torch.Generator().manual_seed(args.seed)
    loss_fn = nn.CrossEntropyLoss()
    validation = links[min(links, key=lambda db: abs(db + 20))]
    x_val, k_val = validation.batch(args.val_symbols, torch.Generator().manual_seed(10_000 + args.seed))

    def decide(x):
        with torch.no_grad():
            return model(x)[0].argmax(1)

    def val_ber():
        model.eval()
        n = k_val.shape[0]
        errors = sum(bit_errors(decide(x_val[i : i + 2000]), k_val[i : i + 2000]) for i in range(0, n, 2000))
        model.train()
        return errors / (2 * k_val.shape[0])

    history, val_initial = [], val_ber()
    t_start = time.perf_counter()
    bar = tqdm(range(args.epochs), disable=args.no_progress, desc=f"imdd {args.mode}")
    x_blk, k_blk, pos = None, None, 0
    for _epoch in bar:
        loss_sum, correct, total, t_epoch = 0.0, 0, 0, time.perf_counter()
        for _ in range(args.steps):
            if x_blk is None or pos + args.batch_size > k_blk.shape[0]:
                db = train_levels[int(torch.randint(len(train_levels), (1,), generator=generator))]
                x_blk, k_blk = links[db].block(generator)
                pos = 0
            x, k = x_blk[pos : pos + args.batch_size], k_blk[pos : pos + args.batch_size]
            pos += args.batch_size
            scores, _ = model(x)
            loss = loss_fn(scores, k)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            model.clamp_weights()
            loss_sum += loss.item() * k.shape[0]
            correct += int((scores.argmax(1) == k).sum())
            total += k.shape[0]
        train_s = time.perf_counter() - t_epoch
        history.append(
            {"loss": loss_sum / total, "ser": 1 - correct / total, "val_ber": val_ber(), "train_s": train_s}
        )
        bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", val_ber=f"{history[-1]['val_ber']:.2e}")
    train_wall = time.perf_counter() - t_start

    # --- test: the SNN and the LMMSE on fresh symbols per noise level ----------------------
    model.eval()
    snn_entries, lmmse_entries = [], []
    t_test = time.perf_counter()
    for i, db in enumerate(tqdm(args.noise_db, disable=args.no_progress, desc="test")):
        link, seed = links[db], 20_000 + 100 * args.seed + i
        x_fit, k_fit = link.batch(args.lmmse_symbols, torch.Generator().manual_seed(30_000 + i))
        eq = LMMSE().fit(x_fit, k_fit)
        lmmse_entries.append(
            _entry(*count_errors(eq.decide, link, seed, args.min_errors, 4_000_000, 100_000))
        )
        batch = 2000 if args.mode == "mock" else 1000
        snn_entries.append(
            _entry(*count_errors(decide, link, seed, args.min_errors, args.max_symbols, batch))
        )
    result = {
        "mode": args.mode,
        "seed": args.seed,
        "epochs": args.epochs,
        "settings": {
            k: getattr(args, k)
            for k in (
                "steps",
                "batch_size",
                "lr",
                "lr_min",
                "dt",
                "t_late",
                "min_errors",
                "max_symbols",
                "val_symbols",
            )
        }
        | {"train_noise": train_levels, "init": str(args.init) if args.init else None},
        "noise_db": args.noise_db,
        "ber_snn": [e["ber"] for e in snn_entries],
        "ber_lmmse": [e["ber"] for e in lmmse_entries],
        "errors_snn": [e["errors"] for e in snn_entries],
        "errors_lmmse": [e["errors"] for e in lmmse_entries],
        "snn": snn_entries,
        "lmmse": lmmse_entries,
        "val_ber_initial": val_initial,
        "val_ber_curve": [h["val_ber"] for h in history],
        "loss_curve": [round(h["loss"], 5) for h in history],
        "train_s": round(sum(h["train_s"] for h in history), 1),
        "train_wall_s": round(train_wall, 1),
        "test_s": round(time.perf_counter() - t_test, 1),
    }
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = f"{args.mode}_seed{args.seed}"
        (RESULTS / f"{stem}.json").write_text(json.dumps(result))
        torch.save(model.state_dict(), RESULTS / f"{stem}.pt")
    if args.figure:
        saved = [_load(f) for f in sorted(RESULTS.glob("*_seed*.json"))]
        plot_ber(saved or [result], args.figure)
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
