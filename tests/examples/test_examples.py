"""Every example runs in a quick mode: it prints a RESULT line with a number that is
checked here, and writes a non-empty figure."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, argv: list[str], capsys) -> dict:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"{name} printed no RESULT line"
    return json.loads(lines[-1][len("RESULT ") :])


def assert_figure(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 10_000, path


def test_quickstart(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYNN_BRAINSCALES2_CHIP", "realistic")
    out = tmp_path / "quickstart.png"
    result = run_example("quickstart", ["--out", str(out), "--duration", "300"], capsys)
    assert 5.0 < result["mean_rate_hz"] < 80.0  # Poisson-driven neurons fire, but not saturated
    assert_figure(out)


def test_single_neuron_demo(tmp_path, capsys):
    out = tmp_path / "single.png"
    result = run_example("single_neuron_demo", ["--out", str(out)], capsys)
    # fixed-pattern variation: tens of percent before, about 1 % after calibration
    assert result["rate_cv_before"] > 0.1
    assert result["rate_cv_after"] < 0.03
    assert_figure(out)


def test_balanced_network(tmp_path, capsys):
    out = tmp_path / "balanced.png"
    result = run_example(
        "balanced_network", ["--out", str(out), "--duration", "400", "--chip", "ideal"], capsys
    )
    # asynchronous irregular: low rates and irregular intervals
    assert 2.0 < result["rate_exc_hz"] < 30.0
    assert result["isi_cv"] > 0.3
    assert_figure(out)


def test_chip_quickstart(tmp_path, capsys):
    out = tmp_path / "chip.png"
    spec = importlib.util.spec_from_file_location("example_chip_quickstart", EXAMPLES / "chip_quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--out", str(out)])
    # on the ideal chip the spike count grows with the weight
    assert (result["ideal_counts"][1:] >= result["ideal_counts"][:-1]).all()
    assert result["ideal_counts"][-1] > result["ideal_counts"][0]
    assert_figure(out)


def test_stdp(tmp_path, capsys):
    out = tmp_path / "stdp.png"
    result = run_example("stdp", ["--pairs", "8", "--out", str(out)], capsys)
    assert result["sign_change_at_zero"]
    assert result["tau_plus_error"] < 0.2
    assert_figure(out)


@pytest.mark.parametrize("duration", [3000.0])
def test_homeostasis(tmp_path, capsys, duration):
    out = tmp_path / "homeostasis.png"
    result = run_example("homeostasis", ["--duration", str(duration), "--out", str(out)], capsys)
    initial, final = result["initial_rates_hz"], result["final_rates_hz"]
    # rates move towards the 60 Hz target from both sides
    assert sum(abs(f - 60.0) for f in final) < sum(abs(i - 60.0) for i in initial)
    assert_figure(out)


def test_imdd(tmp_path, capsys):
    out = tmp_path / "imdd.png"
    argv = ["--epochs", "1", "--steps", "40", "--noise-db", "-20", "--max-symbols", "4000"]
    argv += ["--lmmse-symbols", "20000", "--no-save", "--no-progress", "--figure", str(out)]
    result = run_example("imdd", argv, capsys)
    # 40 steps of training: far from the trained network, but better than chance (BER 0.5)
    assert result["val_ber_curve"][-1] < result["val_ber_initial"]
    assert result["ber_lmmse"][0] < 0.01
    assert_figure(out)


def test_adex_firing_patterns(tmp_path, capsys):
    out = tmp_path / "adex.png"
    result = run_example("adex_firing_patterns", ["--chip", "ideal", "--out", str(out)], capsys)
    p = result["patterns"]
    assert abs(p["tonic"]["last_isi_ms"] / p["tonic"]["first_isi_ms"] - 1) < 0.2  # regular
    assert p["adapting"]["last_isi_ms"] > 3 * p["adapting"]["first_isi_ms"]  # adapts
    assert p["initial burst"]["last_isi_ms"] > 5 * p["initial burst"]["first_isi_ms"]
    assert result["refused"] == ["irregular"]  # negative a: the chip cannot, says so
    assert_figure(out)


def test_nir_norse_yinyang(tmp_path, capsys):
    pytest.importorskip("norse.torch")
    out = tmp_path / "nir.png"
    argv = ["--quick", "--epochs", "5", "--batch-size", "100", "--finetune-epochs", "1", "--out", str(out)]
    result = run_example("nir_norse_yinyang", argv + ["--large-test", "2000"], capsys)
    assert result["norse_test_accuracy"] > 0.5  # 50 Norse steps: well above chance (1/3)
    # the imported network on the realistic chip keeps what Norse learned
    assert result["imported_test_accuracy"] > result["norse_test_accuracy"] - 0.1
    assert len(result["finetune_curve"]) == 1
    large = result["large_test"]  # the same comparison on 2000 fresh samples, paired
    assert large["samples"] == 2000 and large["norse_accuracy"] > 0.5
    assert large["gap"] == pytest.approx(large["imported_accuracy"] - large["norse_accuracy"])
    assert 0.0 < large["gap_se"] < 0.02 and large["agreement"] > 0.8
    assert_figure(out)


def test_mnist(tmp_path, capsys):
    out = tmp_path / "mnist"
    result = run_example("mnist", ["--quick", "--out", str(out), "--no-progress"], capsys)
    # 20 batches of 100 images: far from trained, far above chance (10 %)
    assert result["test_accuracy"] > 0.5
    assert 0.05 < result["spikes_per_neuron_per_input"] < 3.0
    assert result["partitions"] == 3  # 484 -> 256 -> 10: two runs for the hidden layer, one for the output
    assert_figure(out / "mock_seed0_quick.png")
    # the checkpoint reproduces the network: evaluating it gives the same test accuracy
    checkpoint = str(out / "mock_seed0_quick.pt")
    argv = ["--quick", "--epochs", "0", "--init", checkpoint, "--out", str(out)]
    again = run_example("mnist", argv, capsys)
    assert again["initial_test_accuracy"] == result["test_accuracy"] == again["test_accuracy"]
    assert (out / "mock_eval_mock_seed0_quick.json").is_file()


def test_mnist_dropout_masks_hidden_neurons_in_training_only():
    spec = importlib.util.spec_from_file_location("example_mnist_dropout", EXAMPLES / "mnist.py")
    mnist = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mnist)
    model = mnist.MNISTSNN("mock", hidden=64)
    full = model.syn_out.weight.detach().clone()
    model.draw_dropout(0.25, torch.Generator().manual_seed(0))
    masked = model.syn_out.weight.detach()
    dropped = (masked == 0).all(dim=0)
    assert 4 < int(dropped.sum()) < 30  # about 16 of 64 hidden neurons, the same for every output
    torch.testing.assert_close(masked[:, ~dropped], full[:, ~dropped] / 0.75)
    images = torch.rand(3, 28, 28)
    mnist.evaluate(model, images, torch.zeros(3, dtype=torch.long), batch_size=3)  # uses every neuron
    torch.testing.assert_close(model.syn_out.weight.detach(), full)
    model.draw_dropout(0.0, torch.Generator())
    assert model.dropout.mask is None
    assert set(model.state_dict()) == set(mnist.MNISTSNN("mock", hidden=64).state_dict())


def test_mnist_device_and_figure_labels_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):  # chip mode runs the virtual chip on the CPU
        run_example("mnist", ["--mode", "chip", "--device", "cuda", "--quick"], capsys)
    assert "--device cuda: chip mode runs the virtual chip on the CPU" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_example("mnist", ["--figure-from", "a.json", "b.json", "--labels", "one"], capsys)
    assert "--labels: give one per result (2), got 1" in capsys.readouterr().err
