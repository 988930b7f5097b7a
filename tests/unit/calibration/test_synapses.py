"""Gains of single synapses on the calibrated chip, and their use in the torch bridge.

Ground truth through the chip's private door (``VirtualChip._physics``), as in
``test_calibration.py``: the measurement never reads it.
"""

import numpy as np
import pytest
import torch

import cysim
from cysim import ChipConfig, VirtualChip
from cysim import constants as C
from pynn_brainscales2 import snn
from pynn_brainscales2.calibration import CalibrationTargets, calibrate
from pynn_brainscales2.calibration.synapses import measure_synapse_gains

TARGETS = CalibrationTargets(
    tau_mem_us=10.0, tau_syn_exc_us=5.0, tau_syn_inh_us=4.0, syn_gain_exc=0.1, syn_gain_inh=0.1
)


@pytest.fixture(scope="module")
def measured():
    chip = VirtualChip(seed=3)
    cfg = calibrate(chip, TARGETS).apply(ChipConfig())
    rows = np.r_[0:24, 130:142]
    cfg.row_modes[:, rows] = np.where(rows % 3 == 0, cysim.ROW_INH, cysim.ROW_EXC)[None, :]
    h, r, c = (a.ravel() for a in np.meshgrid([0, 1], rows, np.arange(0, 256, 7), indexing="ij"))
    rel = measure_synapse_gains(
        chip,
        cfg,
        h,
        r,
        c,
        TARGETS.syn_gain_exc,
        TARGETS.tau_mem_us,
        TARGETS.tau_syn_exc_us,
        TARGETS.tau_syn_inh_us,
    )
    # truth: the circuit's calibrated gain (its CapMem value on this chip) times the
    # synapse's driver and synapse gain, over the target
    capmem = {k: np.asarray(getattr(cfg, k)).astype(float) for k in C.CAPMEM_FIELDS}
    switches = {k: np.asarray(getattr(cfg, k)) for k in C.SWITCH_FIELDS}
    ph = chip._physics
    p = ph.circuit_parameters(capmem, switches)
    circuit = h * C.N_COLUMNS + c
    inh = cfg.row_modes[h, r] == cysim.ROW_INH
    lsb_per_v = C.CADC_LSB_PER_V * ph.cadc_gain[circuit]
    g = np.where(inh, p.syn_gain_inh[circuit], p.syn_gain_exc[circuit]) * lsb_per_v
    true = g * ph.driver_gain[h, r // 2] * ph.synapse_gain[h, r, c] / 0.1
    return rel, true


def test_single_synapse_gains_match_the_chip(measured):
    rel, true = measured
    assert np.isfinite(rel).all()
    ratio = rel / true
    assert abs(np.mean(ratio) - 1) < 0.01
    assert np.std(ratio) < 0.015  # measured: 0.5 % (true spread 6.2 %)
    # the spread that the circuit calibration leaves (drivers, synapses, its residual) is
    # several times larger and is seen
    assert np.std(true) > 0.04
    assert np.corrcoef(rel, true)[0, 1] > 0.95


def test_measure_synapse_gains_checks_its_input():
    from pynn_brainscales2.errors import ParameterRangeError

    with pytest.raises(ParameterRangeError, match="same length"):
        measure_synapse_gains(VirtualChip.ideal(), ChipConfig(), [0], [0, 1], [0], 0.1, 10.0, 5.0, 5.0)
    assert measure_synapse_gains(VirtualChip.ideal(), ChipConfig(), [], [], [], 0.1, 10.0, 5.0, 5.0).size == 0


def _li_peaks(calibrate_synapses: bool, mock: bool = False):
    """Peak response of 40 read-out neurons to each of 6 inputs alone (weight 2 pu/us
    everywhere), averaged over 8 trials; and the runner."""
    torch.manual_seed(0)
    exp = snn.Experiment(mock=mock, dt=0.1, chip=VirtualChip(seed=5), calibrate_synapses=calibrate_synapses)
    inp = snn.InputNeuron(6, exp)
    syn = snn.Synapse(6, 40, exp)
    with torch.no_grad():
        syn.weight.fill_(2.0)
    li = snn.LI(40, exp, tau_mem_us=10.0, tau_syn_exc_us=2.0, tau_syn_inh_us=2.0)
    x = torch.zeros(300, 6 * 8, 6)
    for b in range(6 * 8):
        x[20, b, b % 6] = 1.0
    out = li(syn(inp(x)))
    snn.run(exp, 30.0)
    peaks = out.v.detach().max(0).values.numpy()  # (trials, 40)
    return np.stack([peaks[k::6].mean(0) for k in range(6)]), exp._runner, syn


def test_chip_mode_writes_weights_for_each_synapse():
    """Equal weights from six inputs onto 40 read-out neurons: with the synapses measured,
    the responses spread less than with the circuits' gains alone, and their mean is the
    model's."""
    model, _, _ = _li_peaks(True, mock=True)
    plain, runner_plain, _ = _li_peaks(False)
    comp, runner, syn = _li_peaks(True)
    assert runner_plain.synapse_gain == {}
    rel = runner.synapse_gain[runner._proj(syn, "excitatory")]
    assert rel.shape == (6 * 40, 1) and np.all((rel > 0.7) & (rel < 1.3))
    steps = runner.weight_steps(syn)["excitatory"]
    assert len(np.unique(steps)) > 1  # the same weight, other steps per synapse
    cv_plain = plain.std() / plain.mean()
    cv_comp = comp.std() / comp.mean()
    assert cv_comp < 0.5 * cv_plain, (cv_plain, cv_comp)  # measured: 7.0 % and 2.2 %
    target = float(model.mean())
    assert abs(comp.mean() / target - 1) < 0.02  # measured: +0.7 % (without: -4.4 %)
    assert abs(comp.mean() / target - 1) < abs(plain.mean() / target - 1)
