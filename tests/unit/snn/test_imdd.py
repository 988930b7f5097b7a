"""The IM/DD link (statistics, Nyquist pulses, noise), the LMMSE baseline, and a short SNN training."""

import importlib.util
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pynn_brainscales2.errors import ParameterRangeError
from pynn_brainscales2.snn.datasets import IMDD
from pynn_brainscales2.snn.imdd import (
    GRAY,
    LEVELS,
    LMMSE,
    bit_errors,
    clopper_pearson,
    nearest_level,
    symbol_bits,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread (the example sets it too); the previous setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _example():
    spec = importlib.util.spec_from_file_location("imdd_example", ROOT / "examples" / "imdd.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


# --- the link ---------------------------------------------------------------------------------
def test_alphabet_has_four_levels_and_a_gray_mapping():
    assert LEVELS == (-3.0, -1.0, 1.0, 3.0)
    assert len(set(GRAY)) == 4
    for left, right in itertools.pairwise(GRAY):  # neighbouring levels: one bit apart
        assert sum(a != b for a, b in zip(left, right, strict=True)) == 1
    x, k = IMDD().batch(20_000, torch.Generator().manual_seed(0))
    assert k.min() == 0 and k.max() == 3
    assert torch.all((torch.bincount(k) - 5000).abs() < 300)  # uniform over the 4 symbols
    assert x.shape == (20_000, 7) and x.dtype == torch.float32


def test_bits_and_nearest_level_decisions():
    assert symbol_bits(torch.tensor([0, 1, 2, 3])).tolist() == [[0, 0], [0, 1], [1, 1], [1, 0]]
    assert nearest_level(torch.tensor([-5.0, -2.1, -1.9, 0.1, 1.9, 2.1])).tolist() == [0, 0, 1, 2, 2, 3]
    # one level off costs one bit, 0 <-> 3 costs one bit (10 vs 00), 0 <-> 2 two bits
    assert bit_errors(torch.tensor([1, 3, 2]), torch.tensor([0, 0, 0])) == 1 + 1 + 2


def test_transmit_power_is_unit_and_the_noise_has_the_requested_variance():
    link = IMDD(noise_db=-17.0)
    clean = IMDD(noise_db=None)
    assert link.noise_std == pytest.approx(math.sqrt(10**-1.7)) and clean.noise_std == 0.0
    k = torch.randint(0, 4, (100_000,), generator=torch.Generator().manual_seed(1))
    tx = link.transmit(k)
    assert tx.square().mean().item() == pytest.approx(1.0, rel=1e-12)
    field = link.fibre(tx)
    assert field.abs().square().mean().item() == pytest.approx(1.0, rel=1e-9)  # all-pass fibre
    noise = link.photodiode(field, torch.Generator().manual_seed(2)) - clean.photodiode(field)
    assert noise.mean().item() == pytest.approx(0.0, abs=5 * link.noise_std / math.sqrt(noise.numel()))
    assert noise.var().item() == pytest.approx(10**-1.7, rel=0.02)  # 300,000 samples: 0.26 % std


def test_without_dispersion_and_noise_the_matched_filter_recovers_the_symbols():
    link = IMDD(noise_db=None, fiber_length_km=0.0, square_law=False)
    k = torch.randint(0, 4, (3000,), generator=torch.Generator().manual_seed(3))
    tx = link.transmit(k)
    rx = link.receive(link.photodiode(link.fibre(tx)))
    # the transmitter: up-sampled levels, RRC, bias 2.25, unit RMS
    up = torch.zeros(3 * 3000, dtype=torch.float64)
    up[::3] = torch.tensor(LEVELS, dtype=torch.float64)[k]
    shaped = torch.fft.ifft(torch.fft.fft(up) * link.filters(up.shape[0])[0]).real + 2.25
    rms = shaped.square().mean().sqrt()
    torch.testing.assert_close(tx, shaped / rms, atol=1e-12, rtol=0)
    # RRC * RRC is a Nyquist pulse: the centre sample is (level + s * bias) / rms, nothing else
    levels = rx * rms - 3 * 2.25
    torch.testing.assert_close(levels, torch.tensor(LEVELS, dtype=torch.float64)[k], atol=1e-9, rtol=0)
    # with the photodiode's square law the levels stay apart (no decision error) ...
    x, k = IMDD(noise_db=None, fiber_length_km=0.0).batch(10_000, torch.Generator().manual_seed(4))
    centre = x[:, 3]
    assert all(centre[k == j].max() < centre[k == j + 1].min() for j in range(3))
    # ... and with 4 km of dispersion they overlap: inter-symbol interference
    x, k = IMDD(noise_db=None).batch(10_000, torch.Generator().manual_seed(4))
    assert centre.shape == x[:, 3].shape and x[k == 0, 3].max() > x[k == 1, 3].min()


def test_windows_are_centred_and_periodic():
    link = IMDD(n_taps=5)
    rx = torch.arange(10.0)
    w = link.windows(rx)
    assert w[0].tolist() == [8.0, 9.0, 0.0, 1.0, 2.0] and w[5].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]


def test_generation_is_reproducible_by_seed():
    a = list(itertools.islice(IMDD(seed=5), 20))
    b = list(itertools.islice(IMDD(seed=5), 20))
    c = list(itertools.islice(IMDD(seed=6), 20))
    assert all(torch.equal(x, y) and k == m for (x, k), (y, m) in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, c, strict=True))
    assert len(list(IMDD(size=25, block_symbols=10))) == 25
    x1, _ = IMDD().batch(100, torch.Generator().manual_seed(7))
    x2, _ = IMDD().batch(100, torch.Generator().manual_seed(7))
    assert torch.equal(x1, x2)


def test_bad_parameters_are_refused():
    with pytest.raises(TypeError, match="unknown parameters"):
        IMDD(taps=7)
    with pytest.raises(ParameterRangeError, match="roll_off"):
        IMDD(roll_off=0.0)


# --- LMMSE and error statistics ------------------------------------------------------------------
def test_lmmse_matches_the_closed_form_on_a_tiny_case():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.5], [2.0, 2.0], [3.0, 0.0], [0.5, 3.0], [1.5, 1.0]])
    k = torch.tensor([0, 1, 3, 2, 0, 1])
    eq = LMMSE().fit(x, k)
    design = np.hstack([x.numpy().astype(float), np.ones((6, 1))])
    a = np.array(LEVELS)[k.numpy()]
    expected = np.linalg.inv(design.T @ design) @ design.T @ a
    np.testing.assert_allclose(eq.weight.numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(eq(x).numpy(), design @ expected, rtol=1e-10, atol=1e-12)
    assert eq.decide(x).tolist() == nearest_level(torch.as_tensor(design @ expected)).tolist()


def test_lmmse_on_the_link_beats_a_single_tap_decision():
    link = IMDD(noise_db=-20.0)
    x, k = link.batch(60_000, torch.Generator().manual_seed(8))
    full = LMMSE().fit(x[:30_000], k[:30_000])
    single = LMMSE().fit(x[:30_000, 3:4], k[:30_000])
    ber_full = bit_errors(full.decide(x[30_000:]), k[30_000:]) / 60_000
    ber_single = bit_errors(single.decide(x[30_000:, 3:4]), k[30_000:]) / 60_000
    assert 1e-3 < ber_full < 1e-2 and ber_single > 3 * ber_full


def test_clopper_pearson_agrees_with_the_beta_quantiles():
    stats = pytest.importorskip("scipy.stats")
    for errors, bits in [(0, 1000), (3, 10_000), (200, 100_000)]:
        lo, hi = clopper_pearson(errors, bits)
        lo_ref = 0.0 if errors == 0 else stats.beta.ppf(0.025, errors, bits - errors + 1)
        hi_ref = stats.beta.ppf(0.975, errors + 1, bits - errors)
        assert lo == pytest.approx(lo_ref, rel=1e-6, abs=1e-12) and hi == pytest.approx(hi_ref, rel=1e-6)


# --- the spiking network --------------------------------------------------------------------------
def test_a_short_training_lowers_the_bit_error_rate():
    torch.manual_seed(0)
    example = _example()
    model = example.IMDDSNN("mock", dt=1.0)
    link = IMDD(noise_db=-20.0)
    x_test, k_test = link.batch(4000, torch.Generator().manual_seed(9))

    def ber():
        with torch.no_grad():
            return bit_errors(model(x_test)[0].argmax(1), k_test) / (2 * 4000)

    before = ber()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, k = link.batch(10_000, torch.Generator().manual_seed(10))
    for i in range(0, 10_000, 200):
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 200])[0], k[i : i + 200])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        model.clamp_weights()
    after = ber()
    assert before > 0.2 and after < 0.1, (before, after)  # trained here: about 0.03
    assert model.syn_hidden.weight.abs().max() <= example.W_HIDDEN_MAX


def test_the_example_prints_one_ber_per_noise_level(capsys):
    result = _example().main(
        ["--epochs", "1", "--steps", "3", "--dt", "1.0", "--noise-db", "-20", "-18", "--max-symbols", "2000",
         "--lmmse-symbols", "20000", "--val-symbols", "2000", "--no-save", "--no-progress"]
    )  # fmt: skip
    last = capsys.readouterr().out.strip().splitlines()[-1]
    printed = json.loads(last[len("RESULT ") :])
    assert last.startswith("RESULT ") and printed["noise_db"] == [-20, -18]
    assert len(printed["ber_snn"]) == len(printed["ber_lmmse"]) == 2 == len(result["errors_lmmse"])
    assert all(e >= 200 for e in printed["errors_lmmse"])  # the LMMSE always counts 200 errors
    assert 0.0 < printed["ber_lmmse"][0] < printed["ber_lmmse"][1] < 0.05
