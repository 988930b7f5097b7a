"""Small trainings in mock mode: they must beat chance clearly within a few epochs."""

import importlib.util
import json
from pathlib import Path

import torch

from pynn_brainscales2 import snn
from pynn_brainscales2.snn import transforms as T
from pynn_brainscales2.snn.datasets import YinYang

ROOT = Path(__file__).resolve().parents[3]


def test_yinyang_subset_beats_chance_within_a_few_epochs():
    torch.manual_seed(0)
    dt = 1.0
    exp = snn.Experiment(mock=True, dt=dt)
    inp = snn.InputNeuron(5, exp)
    s1 = snn.Synapse(5, 40, exp, mean=0.15, std=0.25)
    lif = snn.LIF(40, exp, tau_mem_us=6.0, tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)
    s2 = snn.Synapse(40, 3, exp, std=0.1)
    li = snn.LI(3, exp, tau_mem_us=6.0, tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)
    train, test = YinYang("train", size=600), YinYang("test", size=300)
    opt = torch.optim.Adam([s1.weight, s2.weight], lr=5e-3)

    def scores(x):
        h = lif(s1(inp(T.ttfs_coordinates(x, dt, 38.0, bias_us=0.0))))
        o = li(s2(h))
        snn.run(exp, 38.0)
        return T.decode(o.v, "max")

    for _ in range(4):
        for k in range(0, 600, 50):
            loss = torch.nn.functional.cross_entropy(
                scores(train.features[k : k + 50]), train.labels[k : k + 50]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = (scores(test.features).argmax(1) == test.labels).float().mean().item()
    assert accuracy > 0.6, accuracy  # chance: 1/3


def test_yinyang_example_runs_and_prints_its_result(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("yinyang_example", ROOT / "examples" / "yinyang.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    figure = tmp_path / "yinyang.png"
    argv = ["--epochs", "1", "--train-size", "300", "--dt", "1.0", "--no-progress", "--figure", str(figure)]
    result = example.main(argv)
    assert figure.exists() and figure.stat().st_size > 10_000
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    printed = json.loads(last[len("RESULT ") :])
    assert printed["test_accuracy"] == result["test_accuracy"] > 0.4
    assert printed["mode"] == "mock" and printed["epochs"] == 1


def test_yinyang_example_runs_in_chip_mode(capsys):
    spec = importlib.util.spec_from_file_location("yinyang_example", ROOT / "examples" / "yinyang.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--mode", "chip", "--epochs", "1", "--train-size", "50", "--dt", "1.0", "--no-progress"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    result = json.loads(last[len("RESULT ") :])
    assert 0.0 <= result["test_accuracy"] <= 1.0
