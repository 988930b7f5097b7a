"""Train a 5-120-3 spiking network on the Yin-Yang data set with the torch bridge.

Input: the four features ``[x, y, 1 - x, 1 - y]`` as one spike each between 2 and 26 us,
plus a bias spike at 0 us (time-to-first-spike code). Hidden: 120 LIF neurons. Times are
hardware times [us], potentials normalised (leak and reset 0, threshold 1).

- ``--gradient surrogate`` (default): 3 leaky integrators; the class score is each output's
  maximum membrane over the 38 us of a sample; loss: cross-entropy; surrogate gradients (BPTT).
- ``--gradient eventprop``: EventProp (exact spike-time gradients). By default 3 LIF outputs
  and the time-to-first-spike loss (``--loss ttfs``: the earliest output spike is the class);
  ``--loss maxover`` uses 3 leaky integrators and their maximum over time instead.

    python examples/yinyang.py --mode mock --epochs 50 --seed 0 --figure docs/figures/yinyang_mock.png
    python examples/yinyang.py --mode mock --gradient eventprop --epochs 100 --seed 0

The last line printed is ``RESULT {json}`` with the final test accuracy.
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
from pynn_brainscales2.snn.datasets import YinYang

RESULTS = Path(__file__).resolve().parents[1] / "results" / "yinyang"  # one JSON per mode and seed
RUNTIME_US = 38.0
T_EARLY_US, T_LATE_US, T_BIAS_US = 2.0, 26.0, 0.0


class YinYangSNN(nn.Module):
    """5 inputs -> 120 LIF -> 3 outputs.

    ``gradient="surrogate"``: LI outputs, max-over-time read-out. ``gradient="eventprop"``:
    LIF outputs with a time-to-first-spike read-out (``loss="ttfs"``; the score is ``-t_first``
    [us], so the earliest spike wins) or LI outputs with the maximum over time
    (``loss="maxover"``).
    """

    def __init__(
        self,
        mode: str,
        dt: float,
        hidden: int = 120,
        surrogate: str = "superspike",
        alpha: float = 50.0,
        out_mean: float = 0.05,
        chip=None,
        gradient: str = "surrogate",
        loss: str = "maxover",
        in_mean: float = 0.15,
        in_std: float = 0.25,
        out_std: float = 0.1,
        min_slope: float | None = None,
        weight_headroom: float = 2.0,
    ):
        super().__init__()
        self.exp = snn.Experiment(mock=(mode == "mock"), dt=dt, chip=chip, weight_headroom=weight_headroom)
        tau = dict(tau_mem_us=6.0, tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)
        self.dt = dt
        self.gradient, self.loss = gradient, loss
        self.input = snn.InputNeuron(5, self.exp, name="input")
        self.syn_hidden = snn.Synapse(5, hidden, self.exp, mean=in_mean, std=in_std, name="input->hidden")
        if gradient == "eventprop":
            ep = dict(gradient="eventprop", min_slope=min_slope)
            self.hidden = snn.LIF(hidden, self.exp, name="hidden", **ep, **tau)
        else:
            self.hidden = snn.LIF(hidden, self.exp, name="hidden", method=surrogate, alpha=alpha, **tau)
        self.syn_out = snn.Synapse(hidden, 3, self.exp, mean=out_mean, std=out_std, name="hidden->output")
        if gradient == "eventprop" and loss == "ttfs":
            # only the first output spike enters the loss: one spike per neuron is enough
            self.out = snn.LIF(3, self.exp, name="output", max_spikes=1, **ep, **tau)
        elif gradient == "eventprop":
            self.out = snn.LI(3, self.exp, name="output", **ep, **tau)
        else:
            self.out = snn.LI(3, self.exp, name="output", **tau)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return T.ttfs_coordinates(features, self.dt, RUNTIME_US, T_EARLY_US, T_LATE_US, bias_us=T_BIAS_US)

    def forward(self, features: torch.Tensor):
        h_in = self.input(self.encode(features))
        h_hidden = self.hidden(self.syn_hidden(h_in))
        h_out = self.out(self.syn_out(h_hidden))
        snn.run(self.exp, RUNTIME_US)
        self.last_output = h_out
        if self.gradient == "eventprop" and self.loss == "ttfs":
            return -losses.first_spike_times(h_out), h_hidden
        return losses.max_over_time(h_out), h_hidden


def evaluate(model, data, batch_size=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for k in range(0, len(data), batch_size):
            x, y = data.features[k : k + batch_size], data.labels[k : k + batch_size]
            scores, _ = model(x)
            correct += int((scores.argmax(1) == y).sum())
    model.train()
    return correct / len(data)


def _load(path: Path) -> dict:
    """A result: a JSON file, or a log whose last ``RESULT `` line holds it."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :]) if lines else json.loads(Path(path).read_text())


def plot_curves(results: list[dict], path: Path) -> None:
    """Test, validation and training accuracy and the loss per epoch, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(results, key=lambda r: r["seed"])
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r, colour in zip(results, plt.cm.tab10.colors, strict=False):
        epochs = range(1, len(r["test_curve"]) + 1)
        ax_acc.plot(
            epochs, 100 * torch.tensor(r["test_curve"]), color=colour, label=f"test, seed {r['seed']}"
        )
        if "validation_curve" in r:
            ax_acc.plot(
                epochs, 100 * torch.tensor(r["validation_curve"]), ":", color=colour, label="validation"
            )
        if "train_curve" in r:
            ax_acc.plot(
                epochs, 100 * torch.tensor(r["train_curve"]), "--", color=colour, alpha=0.6, label="train"
            )
        ax_loss.plot(epochs, r["loss_curve"], color=colour, label=f"seed {r['seed']}")
    final = torch.tensor([r["test_accuracy"] for r in results]) * 100
    spread = f" +- {final.std().item():.2f}" if len(results) > 1 else ""
    grad = results[0].get("gradient", "surrogate")
    ax_acc.set_title(
        f"Yin-Yang, {results[0]['mode']} mode, {grad}: final test {final.mean().item():.2f}{spread} %",
        fontsize=10,
    )
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy [%]")
    ax_acc.set_ylim(90, 100)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=6, ncol=len(results), loc="lower right")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (cross-entropy)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["mock", "chip"], default="mock")
    parser.add_argument("--gradient", choices=["surrogate", "eventprop"], default="surrogate")
    parser.add_argument(
        "--loss",
        choices=["ttfs", "maxover"],
        default=None,
        help="eventprop: time-to-first-spike loss on LIF outputs (default) or max-over-time on LI outputs",
    )
    parser.add_argument("--tau0", type=float, default=0.5, help="ttfs: softmax temperature [us]")
    parser.add_argument("--tau1", type=float, default=6.4, help="ttfs: time scale of the regulariser [us]")
    parser.add_argument("--ttfs-alpha", type=float, default=0.03, help="ttfs: weight of the regulariser")
    parser.add_argument(
        "--silent-penalty",
        type=float,
        default=1.0,
        help="ttfs: weight of (v_th - v_max) for a silent correct output neuron",
    )
    parser.add_argument(
        "--min-slope",
        type=float,
        default=None,
        help="eventprop: lower clamp of dV/dt at a spike [pu/us] (default 1e-3 in mock, 0.02 in chip mode)",
    )
    parser.add_argument("--in-mean", type=float, default=0.15, help="mean of the initial input weights")
    parser.add_argument("--in-std", type=float, default=0.25, help="std of the initial input weights")
    parser.add_argument(
        "--out-std",
        type=float,
        default=None,
        help="std of the initial output weights (default 0.1; ttfs 0.01)",
    )
    parser.add_argument("--chip-seed", type=int, default=0, help="chip mode: seed of the VirtualChip")
    parser.add_argument(
        "--weight-headroom",
        type=float,
        default=None,
        help="chip mode: largest hardware weight = this many times the largest initial weight "
        "(default 2; eventprop 8: its output weights grow far beyond their small start, and with 4 "
        "up to 9 % of them saturated and the training diverged)",
    )
    parser.add_argument("--surrogate", default="superspike", help="superspike, sigmoid or triangle")
    parser.add_argument("--alpha", type=float, default=50.0, help="surrogate sharpness [1/pu]")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument(
        "--out-mean",
        type=float,
        default=None,
        help="mean of the initial output weights [pu/us] (default 0.05; ttfs 0.01: outputs first spike late)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--schedule",
        choices=["exp", "cosine"],
        default="cosine",
        help="learning-rate schedule: exp (x gamma per epoch) or cosine (to lr-min over all epochs)",
    )
    parser.add_argument("--gamma", type=float, default=0.97, help="learning-rate decay per epoch (exp)")
    parser.add_argument("--lr-min", type=float, default=0.0, help="final learning rate (cosine)")
    parser.add_argument(
        "--dt",
        type=float,
        default=None,
        help="grid step [us] (default 0.5; eventprop 0.1: input spike times on a 0.5 us grid "
        "resolve a coordinate only to 1/48, which costs EventProp's spike-time gradients about 2 points)",
    )
    parser.add_argument(
        "--rate-reg", type=float, default=0.0, help="coefficient of the firing-rate regulariser"
    )
    parser.add_argument("--weight-reg", type=float, default=0.0, help="coefficient of sum(w^4)/N")
    parser.add_argument("--train-size", type=int, default=None, help="use only the first N training samples")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--figure",
        type=Path,
        help="write the curves of all saved runs (results/yinyang/) with this run's mode and settings",
    )
    parser.add_argument(
        "--figure-from",
        type=Path,
        nargs="+",
        help="no training: draw --figure from these results (JSON files or logs with a RESULT line)",
    )
    args = parser.parse_args(argv)
    if args.figure_from:
        plot_curves([_load(f) for f in args.figure_from], args.figure or Path("yinyang.png"))
        return None

    if args.loss is None:
        args.loss = "ttfs" if args.gradient == "eventprop" else "maxover"
    ttfs = args.gradient == "eventprop" and args.loss == "ttfs"
    if args.min_slope is None and args.gradient == "eventprop":
        args.min_slope = 0.02 if args.mode == "chip" else snn.functional.eventprop.DEFAULT_MIN_SLOPE
    if args.weight_headroom is None:
        args.weight_headroom = 8.0 if args.gradient == "eventprop" else 2.0
    if args.dt is None:
        args.dt = 0.1 if args.gradient == "eventprop" else 0.5
    if args.out_mean is None:
        args.out_mean = 0.01 if ttfs else 0.05
    if args.out_std is None:
        args.out_std = 0.01 if ttfs else 0.1
    if args.gradient == "surrogate" and args.loss != "maxover":
        parser.error("--loss ttfs needs --gradient eventprop")
    if args.gradient == "eventprop" and args.rate_reg:
        parser.error("--rate-reg needs spikes on the grid (--gradient surrogate)")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train, validation, test = YinYang("train", size=args.train_size), YinYang("validation"), YinYang("test")
    chip = None
    if args.mode == "chip":
        from cysim import VirtualChip

        chip = VirtualChip(seed=args.chip_seed)
    model = YinYangSNN(
        args.mode,
        args.dt,
        surrogate=args.surrogate,
        alpha=args.alpha,
        out_mean=args.out_mean,
        chip=chip,
        gradient=args.gradient,
        loss=args.loss,
        in_mean=args.in_mean,
        in_std=args.in_std,
        out_std=args.out_std,
        min_slope=args.min_slope,
        weight_headroom=args.weight_headroom,
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    if args.schedule == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser, T_max=max(args.epochs, 1), eta_min=args.lr_min
        )
    else:
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=args.gamma)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)

    history = []
    t_start = time.perf_counter()
    bar = tqdm(range(args.epochs), disable=args.no_progress, desc=f"yinyang {args.mode}")
    for epoch in bar:
        order = torch.randperm(len(train), generator=generator)
        total, correct, loss_sum, t_epoch = 0, 0, 0.0, time.perf_counter()
        for k in range(0, len(train), args.batch_size):
            idx = order[k : k + args.batch_size]
            x, y = train.features[idx], train.labels[idx]
            scores, h_hidden = model(x)
            if ttfs:  # scores are -t_first
                loss = losses.ttfs_cross_entropy(
                    -scores,
                    y,
                    args.tau0,
                    args.ttfs_alpha,
                    args.tau1,
                    v_max=model.last_output.v_max,
                    silent_penalty=args.silent_penalty,
                )
            else:
                loss = loss_fn(scores, y)
            if args.rate_reg:
                loss = loss + args.rate_reg * T.firing_rate_regulariser(h_hidden.spikes)
            if args.weight_reg:
                loss = loss + T.weight_regulariser(
                    [model.syn_hidden.weight, model.syn_out.weight], args.weight_reg
                )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(idx)
            correct += int((scores.argmax(1) == y).sum())
            total += len(idx)
        schedule.step()
        test_acc = evaluate(model, test)
        val_acc = evaluate(model, validation)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": loss_sum / total,
                "train_accuracy": correct / total,
                "validation_accuracy": val_acc,
                "test_accuracy": test_acc,
                "epoch_s": time.perf_counter() - t_epoch,
            }
        )
        bar.set_postfix(
            loss=f"{loss_sum / total:.3f}", train=f"{correct / total:.3f}", test=f"{test_acc:.3f}"
        )
        if args.mode == "chip" and model.exp._runner is not None:
            history[-1]["saturated"] = [
                round(model.exp._runner.saturated_fraction(s), 4) for s in (model.syn_hidden, model.syn_out)
            ]
        if args.no_progress:  # one line per epoch for logs
            line = {k: round(v, 4) if isinstance(v, float) else v for k, v in history[-1].items()}
            print("EPOCH " + json.dumps(line), flush=True)
    result = {
        "mode": args.mode,
        "gradient": args.gradient,
        "loss": args.loss,
        "surrogate": args.surrogate,
        "seed": args.seed,
        "epochs": args.epochs,
        "dt_us": args.dt,
        "settings": {
            k: getattr(args, k)
            for k in (
                "batch_size",
                "lr",
                "schedule",
                "gamma",
                "lr_min",
                "alpha",
                "out_mean",
                "rate_reg",
                "weight_reg",
                *(
                    ("loss", "tau0", "tau1", "ttfs_alpha", "in_mean", "in_std", "out_std")
                    if args.gradient == "eventprop"
                    else ()
                ),
                *(
                    ("chip_seed", "weight_headroom")
                    if args.mode == "chip" and args.gradient == "eventprop"
                    else ()
                ),
            )
        },
        "epoch_s": [round(h["epoch_s"], 2) for h in history],
        "test_accuracy": history[-1]["test_accuracy"] if history else None,
        "train_accuracy": history[-1]["train_accuracy"] if history else None,
        "best_test_accuracy": max((h["test_accuracy"] for h in history), default=None),
        "validation_accuracy": history[-1]["validation_accuracy"] if history else None,
        "test_curve": [round(h["test_accuracy"], 4) for h in history],
        "validation_curve": [round(h["validation_accuracy"], 4) for h in history],
        "train_curve": [round(h["train_accuracy"], 4) for h in history],
        "loss_curve": [round(h["loss"], 4) for h in history],
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    stem = args.mode if args.gradient == "surrogate" else f"{args.mode}_eventprop_{args.loss}"
    if args.train_size is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{stem}_seed{args.seed}.json").write_text(json.dumps(result))
    if args.figure:
        same = [_load(f) for f in sorted(RESULTS.glob(f"{stem}_seed*.json"))]
        same = [r for r in same if (r.get("settings"), r["epochs"]) == (result["settings"], result["epochs"])]
        plot_curves(same or [result], args.figure)
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
