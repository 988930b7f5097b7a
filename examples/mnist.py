"""Classify MNIST digits with a 484-256-10 spiking network (seed 002: 22x22 -> 256 LIF -> 10 LI).

Input: the 28x28 image cropped to its central 22x22 pixels and encoded time-to-first-spike
with T = 30 steps of 1 us (the batch's values mapped onto 0..30, rounded and inverted:
the brightest pixels spike at 0 us, background pixels not at all). Hidden: 256 LIF neurons,
output: 10 leaky integrators, ``tau_mem = 5.7 us``, ``tau_syn = 6 us``, leak and reset 0,
threshold 1 (potentials normalised), 40 us per image on a 1 us grid. The class score is each
output's maximum membrane over time; loss: cross-entropy plus the regularisers of the seed
(squared spikes beyond one per hidden neuron, averaged over the neurons; ``C sum(w^4) / N``
per layer; the biquadratic mean of the scores). Weights pass the saturating map of the seed's eq. (30)-(31) (cap 2 in the
seed's unit, :data:`W_CAP`). Training images are rotated by up to +-25 degrees (p = 0.5)
and get noise near the strokes (p = 0.5). ``--dropout p`` drops hidden neurons during training
(the seed's best setting is 20 %; one mask per batch, as ``hxtorch``'s ``BatchDropout``; off
by default: 20 % gave no gain here, see docs/mnist.md).

    python examples/mnist.py --mode mock --epochs 30 --seed 0              # full 60k / 10k
    python examples/mnist.py --mode chip --init results/mnist/mock_seed0.pt --epochs 2

Chip mode (``snn.Experiment(mock=False)``: the virtual chip runs every forward pass, the
gradient follows the model) fine-tunes a mock-trained network (``--init``) with the
regulariser coefficients of the seed's Table 4. The network does not fit one chip: 484
inputs need 4 neuron circuits per hidden neuron (128 inputs each, one synapse row per sign:
:meth:`MNISTSNN.map_cap_to_chip_range`), so the 256 hidden neurons run in two chip runs of
128 and the output layer in a third (seed eq. (19),
:func:`~pynn_brainscales2.mapping.plan_feedforward`). ``partitions`` in the result is that
number of chip runs per batch, as executed in chip mode; mock mode reports the planned
number (what a chip run of the same network needs), although the mock simulation itself
runs the whole network at once.

The last line printed is ``RESULT {json}`` with ``test_accuracy``, ``partitions``,
``spikes_per_neuron_per_input`` (hidden layer, test set) and the per-epoch curves. Results,
a checkpoint (``state_dict``) and a figure are written after every epoch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from pynn_brainscales2 import snn
from pynn_brainscales2.mapping import plan_feedforward
from pynn_brainscales2.snn import losses
from pynn_brainscales2.snn import transforms as T
from pynn_brainscales2.snn.datasets import MNIST

RESULTS = Path(__file__).resolve().parents[1] / "results" / "mnist"  # JSON, checkpoint, figure per run
CROP = 22
CODE_STEPS, CODE_STEP_US = 30, 1.0  # TTFS: T = 30 steps of 1 us
RUNTIME_US = 40.0
DT_US = 1.0
TAU_MEM_US, TAU_SYN_US = 5.7, 6.0
#: the seed's weights are currents relative to the leak conductance: w_seed = tau_mem * w [pu/us]
SEED_WEIGHT_UNIT = TAU_MEM_US
W_CAP = 2.0 / SEED_WEIGHT_UNIT  # [pu/us]: the seed's cap w^ = 2
#: regulariser coefficients: seed Table 3 (simulation) and Table 4 (hardware in the loop)
COEFFICIENTS = {
    "mock": {"bursts": 8e-4, "hidden_weights": 6e-3, "output_weights": 6e-3, "readout": 4e-5},
    "chip": {"bursts": 5e-3, "hidden_weights": 9e-3, "output_weights": 9.2e-3, "readout": 1e-4},
}
PUBLISHED = {"simulation": 0.9842, "simulation_std": 0.0006, "hardware": 0.9722}


class Saturate(nn.Module):
    """Weight parametrisation: the saturating map of seed eq. (30)-(31) at ``+-cap``."""

    def __init__(self, cap: float):
        super().__init__()
        self.cap = cap

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return T.saturate_weights(w, self.cap)


class HiddenDropout(nn.Module):
    """Weight parametrisation of the output synapses: dropout of hidden neurons, one mask per
    batch (the seed's 20 % in the hidden layer; as ``hxtorch``'s ``BatchDropout``, every
    image of a batch loses the same neurons). A dropped neuron's column is zero, the others
    are scaled by ``1 / (1 - p)`` (as :class:`torch.nn.Dropout`), so that evaluation, which
    uses every neuron, sees the weights as trained. No mask (``mask = None``): identity."""

    def __init__(self):
        super().__init__()
        self.mask: torch.Tensor | None = None  # [hidden], not a buffer: checkpoints stay plain

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w if self.mask is None else w * self.mask


class MNISTSNN(nn.Module):
    """484 inputs -> ``hidden`` LIF -> 10 LI; scores: each output's maximum membrane."""

    def __init__(
        self,
        mode: str,
        chip=None,
        hidden: int = 256,
        dt: float = DT_US,
        runtime_us: float = RUNTIME_US,
        in_mean: float = 0.005,
        in_std: float = 0.03,
        out_std: float = 0.04,
        alpha: float = 50.0,
        v_min: float | None = None,
    ):
        super().__init__()
        self.exp = snn.Experiment(mock=(mode == "mock"), dt=dt, chip=chip)
        self.dt, self.runtime_us = dt, runtime_us
        tau = dict(tau_mem_us=TAU_MEM_US, tau_syn_exc_us=TAU_SYN_US, tau_syn_inh_us=TAU_SYN_US)
        self.input = snn.InputNeuron(CROP * CROP, self.exp, name="input")
        self.syn_hidden = snn.Synapse(CROP * CROP, hidden, self.exp, mean=in_mean, std=in_std, name="in->hid")
        rail = {} if v_min is None else {"v_min": v_min}
        self.hidden = snn.LIF(hidden, self.exp, name="hidden", alpha=alpha, **rail, **tau)
        self.syn_out = snn.Synapse(hidden, 10, self.exp, std=out_std, name="hid->out")
        self.out = snn.LI(10, self.exp, name="output", **tau)
        for syn in (self.syn_hidden, self.syn_out):
            parametrize.register_parametrization(syn, "weight", Saturate(W_CAP))
        self.dropout = HiddenDropout()
        parametrize.register_parametrization(self.syn_out, "weight", self.dropout)

    def draw_dropout(self, p: float, generator: torch.Generator) -> None:
        """A new mask dropping each hidden neuron with probability ``p`` (0: none)."""
        if p <= 0.0:
            self.dropout.mask = None
            return
        keep = torch.rand(self.hidden.size, generator=generator) >= p
        self.dropout.mask = keep.float().to(self.syn_out.parametrizations.weight.original.device) / (1.0 - p)

    def map_cap_to_chip_range(self) -> None:
        """Chip mode: put the cap ``W_CAP`` (no weight exceeds it) at the chip's largest step
        count, instead of twice the largest weight at mapping time. Then every input needs one
        synapse row per sign and a hidden neuron 4 circuits: 3 chip runs, as in the seed. Call
        it after loading weights and before the first forward pass."""
        w_max = max(float(s.weight.detach().abs().max()) for s in (self.syn_hidden, self.syn_out))
        self.exp.weight_headroom = max(1.0, W_CAP / w_max)

    def raw_weights(self) -> list[torch.Tensor]:
        """The trained parameters before the saturating map [pu/us]."""
        return [s.parametrizations.weight.original for s in (self.syn_hidden, self.syn_out)]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Spikes ``[time, batch, 484]`` from images ``[batch, 28, 28]`` in 0..1."""
        return T.ttfs_pixels(T.center_crop(images, CROP), self.dt, CODE_STEPS, CODE_STEP_US, self.runtime_us)

    def forward(self, images: torch.Tensor):
        h_hidden = self.hidden(self.syn_hidden(self.input(self.encode(images))))
        h_out = self.out(self.syn_out(h_hidden))
        snn.run(self.exp, self.runtime_us)
        return losses.max_over_time(h_out), h_hidden


def augment(images: torch.Tensor, generator: torch.Generator, noise_std: float) -> torch.Tensor:
    """Seed 002 sec. 5.1.1: rotation first (on the full image), crop later, noise last
    (noise on the 28x28 image: the crop only drops a clean border)."""
    images = T.random_rotation(images, 25.0, p=0.5, gain=1.5, generator=generator)
    return T.stroke_noise(images, std=noise_std, p=0.5, sigma_px=1.0, generator=generator)


def regularisers(model: MNISTSNN, scores: torch.Tensor, h_hidden, c: dict) -> torch.Tensor:
    w_hidden, w_out = (w * SEED_WEIGHT_UNIT for w in model.raw_weights())  # the seed's unit
    return (
        c["bursts"] * T.burst_regulariser(h_hidden.spikes, neurons="mean")
        + T.weight_regulariser(w_hidden, c["hidden_weights"])
        + T.weight_regulariser(w_out, c["output_weights"])
        + c["readout"] * T.trace_regulariser(scores)
    )


def evaluate(model: MNISTSNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    """Accuracy and hidden spikes per neuron and image (every hidden neuron in use)."""
    model.eval()
    model.dropout.mask = None
    correct, spikes = 0, 0.0
    device = model.raw_weights()[0].device
    with torch.no_grad(), parametrize.cached():
        for k in range(0, len(labels), batch_size):
            scores, h_hidden = model(images[k : k + batch_size].to(device).float() / 255.0)
            correct += int((scores.argmax(1) == labels[k : k + batch_size].to(device)).sum())
            spikes += float(h_hidden.spikes.sum())
    model.train()
    n = len(labels)
    return correct / n, spikes / (n * model.hidden.size)


def _load(path: Path) -> dict:
    """A result: a JSON file, or a log whose last ``RESULT `` line holds it."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :]) if lines else json.loads(Path(path).read_text())


def plot_curves(results: list[dict], path: Path, labels: list[str] | None = None) -> None:
    """Accuracy (test, train), training loss and hidden firing rate per epoch, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss, ax_rate) = plt.subplots(1, 3, figsize=(13, 3.8))
    for k, (r, colour) in enumerate(zip(results, plt.cm.tab10.colors, strict=False)):
        label = labels[k] if labels else f"{r['mode']}, seed {r['seed']}"
        if r.get("settings", {}).get("init"):
            label += f", from {Path(r['settings']['init']).stem}"
        epochs = range(r.get("first_epoch", 1), r.get("first_epoch", 1) + len(r["test_curve"]))
        n_test = r["settings"]["test_samples"]
        test_label = f"test ({n_test} images), {label}"
        ax_acc.plot(epochs, [100 * a for a in r["test_curve"]], "o-", ms=3, color=colour, label=test_label)
        if r.get("initial_test_accuracy") is not None:  # the loaded network before training
            ax_acc.plot([epochs.start - 1], [100 * r["initial_test_accuracy"]], "x", ms=7, color=colour)
        ax_acc.plot(epochs, [100 * a for a in r["train_curve"]], "--", color=colour, alpha=0.6, label="train")
        ax_loss.plot(epochs, r["loss_curve"], "o-", ms=3, color=colour, label=label)
        ax_rate.plot(epochs, r["rate_curve"], "o-", ms=3, color=colour, label=label)
    for value, text in (
        (PUBLISHED["simulation"], "seed: simulation"),
        (PUBLISHED["hardware"], "seed: hardware"),
    ):
        ax_acc.axhline(100 * value, color="0.4", ls=":", lw=1)
        ax_acc.text(ax_acc.get_xlim()[0], 100 * value, f" {text}", fontsize=7, va="bottom", color="0.3")
    final = ", ".join(f"{100 * r['test_accuracy']:.2f} %" for r in results)
    ax_acc.set_title(f"MNIST 484-256-10: final test {final}", fontsize=10)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy [%]")
    # the range of the test curves (a first epoch's training accuracy may lie below it)
    low = min(min(r["test_curve"] + [r.get("initial_test_accuracy") or 1.0]) for r in results)
    ax_acc.set_ylim(max(80.0, 100 * low - 1), 100)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (incl. regularisers)")
    ax_rate.set_xlabel("epoch")
    ax_rate.set_ylabel("hidden spikes per neuron and image (test)")
    for ax in (ax_acc, ax_loss, ax_rate):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["mock", "chip"], default="mock")
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: 30 (mock), 2 (chip); 0: only evaluate (--init)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=60_000, help="first N training images")
    parser.add_argument("--test-samples", type=int, default=10_000, help="first N test images")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-3 (mock), 5e-4 (chip)")
    parser.add_argument("--gamma", type=float, default=0.97, help="learning-rate decay per epoch")
    parser.add_argument("--noise-std", type=float, default=0.3, help="std of the stroke noise")
    parser.add_argument("--no-augment", action="store_true", help="train on the plain images")
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="probability of dropping a hidden neuron during training (one mask per batch); default 0",
    )
    parser.add_argument(
        "--v-min",
        type=float,
        default=None,
        help="mock: lower bound of the hidden membranes [pu] (the chip's CADC floor is -1.4 pu); default none",
    )
    parser.add_argument("--init", type=Path, help="start from this checkpoint (a state_dict .pt)")
    parser.add_argument("--chip-seed", type=int, default=0, help="chip mode: seed of the VirtualChip")
    parser.add_argument("--data-root", type=Path, default=None, help="directory with the MNIST files")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for JSON, checkpoint, figure")
    parser.add_argument("--figure", type=Path, help="default: <out>/<mode>_seed<seed>.png")
    parser.add_argument("--figure-from", type=Path, nargs="+", help="no training: plot these results")
    parser.add_argument("--labels", nargs="+", help="with --figure-from: one legend label per result")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 2000 images, 500 test images")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device of the model in mock mode (e.g. cuda); chip mode runs on the CPU",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.figure_from:
        if args.labels and len(args.labels) != len(args.figure_from):
            parser.error(f"--labels: give one per result ({len(args.figure_from)}), got {len(args.labels)}")
        plot_curves([_load(f) for f in args.figure_from], args.figure or Path("mnist.png"), args.labels)
        return None
    chip_mode = args.mode == "chip"
    if chip_mode and args.v_min is not None:
        parser.error("--v-min applies to mock mode; the chip's membranes have their own floor")
    if args.quick:
        args.train_samples, args.test_samples = 2000, 500
        args.epochs = 1 if args.epochs is None else args.epochs
    if args.epochs is None:
        args.epochs = 2 if chip_mode else 30
    if args.lr is None:
        args.lr = 5e-4 if chip_mode else 2e-3
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if chip_mode and torch.device(args.device).type != "cpu":
        parser.error(f"--device {args.device}: chip mode runs the virtual chip on the CPU; use --device cpu")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train, test = MNIST(args.data_root, train=True), MNIST(args.data_root, train=False)
    x_train, y_train = train.images[: args.train_samples], train.labels[: args.train_samples]
    x_test, y_test = test.images[: args.test_samples], test.labels[: args.test_samples]
    chip = None
    if chip_mode:
        from cysim import VirtualChip

        chip = VirtualChip(seed=args.chip_seed)
    model = MNISTSNN(args.mode, chip=chip, v_min=args.v_min)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu"))
    model.to(device)
    model.map_cap_to_chip_range()
    coefficients = COEFFICIENTS[args.mode]
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=args.gamma)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)
    plan = plan_feedforward([CROP * CROP, model.hidden.size, 10], names=["hidden", "output"])
    stem = f"{args.mode}_seed{args.seed}" + ("_quick" if args.quick else "")
    if args.epochs == 0:  # an evaluation: named after what it evaluates, next to the runs
        stem = f"{args.mode}_eval_" + (args.init.stem if args.init else f"untrained_seed{args.seed}")
    args.out.mkdir(parents=True, exist_ok=True)
    figure = args.figure or args.out / f"{stem}.png"
    eval_batch = 500 if chip_mode else 1000

    first_epoch = 1  # with --init next to its run's JSON: count on from that run's epochs
    if args.init and args.init.with_suffix(".json").is_file():
        before = json.loads(args.init.with_suffix(".json").read_text())
        first_epoch = before.get("first_epoch", 1) + before.get("epochs", 0)
    initial = None
    if args.init or args.epochs == 0:  # the loaded network in this mode, before any training
        initial = evaluate(model, x_test, y_test, eval_batch)
        print(
            f"INIT test accuracy {initial[0]:.4f}, {initial[1]:.3f} spikes per neuron and image", flush=True
        )
    history = []
    t_start = time.perf_counter()

    def summary() -> dict:
        last = history[-1] if history else {"test_accuracy": initial[0], "rate": initial[1]}
        executed = model.exp.partition_plan  # chip mode: the plan the chip runs followed
        runs = (executed or plan).runs
        return {
            "mode": args.mode,
            "seed": args.seed,
            "epochs": len(history),
            "epochs_planned": args.epochs,
            "settings": {
                k: getattr(args, k)
                for k in (
                    "batch_size",
                    "lr",
                    "gamma",
                    "noise_std",
                    "no_augment",
                    "dropout",
                    "v_min",
                    "device",
                    "train_samples",
                    "test_samples",
                )
            }
            | {
                "coefficients": coefficients,
                "init": str(args.init) if args.init else None,
                "chip_seed": args.chip_seed if chip_mode else None,
                "dt_us": DT_US,
                "runtime_us": RUNTIME_US,
                "w_cap": W_CAP,
            },
            "first_epoch": first_epoch,
            "initial_test_accuracy": None if initial is None else initial[0],
            "test_accuracy": last["test_accuracy"],
            "best_test_accuracy": max(h["test_accuracy"] for h in history) if history else None,
            "train_accuracy": last.get("train_accuracy"),
            "spikes_per_neuron_per_input": last["rate"],
            "partitions": len(runs),
            "partition_plan": [[r.layer, r.start, r.stop, r.circuits] for r in runs],
            "partitions_note": "chip runs per batch (layer, neurons start:stop, circuits), seed eq. (19); "
            + ("as executed" if executed else "planned; mock mode simulates the whole network at once"),
            "test_curve": [round(h["test_accuracy"], 4) for h in history],
            "train_curve": [round(h["train_accuracy"], 4) for h in history],
            "loss_curve": [round(h["loss"], 5) for h in history],
            "rate_curve": [round(h["rate"], 4) for h in history],
            "epoch_s": [round(h["epoch_s"], 1) for h in history],
            "train_epoch_s": [round(h["train_s"], 1) for h in history],
            "wall_s": round(time.perf_counter() - t_start, 1),
            "published": PUBLISHED,
        }

    for epoch in range(args.epochs):
        order = torch.randperm(len(y_train), generator=generator)
        total, correct, loss_sum, t_epoch = 0, 0, 0.0, time.perf_counter()
        batches = range(0, len(y_train), args.batch_size)
        bar = tqdm(
            batches, disable=args.no_progress, desc=f"mnist {args.mode} epoch {epoch + 1}/{args.epochs}"
        )
        for k in bar:
            idx = order[k : k + args.batch_size]
            images, y = x_train[idx].to(device).float() / 255.0, y_train[idx].to(device)
            if not args.no_augment:
                images = augment(images, generator, args.noise_std)
            model.draw_dropout(args.dropout, generator)
            with parametrize.cached():  # the saturating map once per batch, not per use
                scores, h_hidden = model(images)
                loss = loss_fn(scores, y) + regularisers(model, scores, h_hidden, coefficients)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(idx)
            correct += int((scores.argmax(1) == y).sum())
            total += len(idx)
            if k // args.batch_size % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / total:.3f}", train=f"{correct / total:.3f}")
        schedule.step()
        train_s = time.perf_counter() - t_epoch
        test_acc, rate = evaluate(model, x_test, y_test, eval_batch)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": loss_sum / total,
                "train_accuracy": correct / total,
                "test_accuracy": test_acc,
                "rate": rate,
                "train_s": train_s,
                "epoch_s": time.perf_counter() - t_epoch,
            }
        )
        line = {k: round(v, 4) if isinstance(v, float) else v for k, v in history[-1].items()}
        print("EPOCH " + json.dumps(line), flush=True)
        # after every epoch: a long run stopped early keeps its results
        (args.out / f"{stem}.json").write_text(json.dumps(summary()))
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, args.out / f"{stem}.pt")
        plot_curves([summary()], figure)
    result = summary()
    if not history:
        (args.out / f"{stem}.json").write_text(json.dumps(result))
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
