"""Recording to files, Assemblies as projection sources, HXNeuron and MADC limits."""

import numpy as np
import pytest
from pyNN.recording import get_io

import pynn_brainscales2 as sim
from pynn_brainscales2 import errors
from pynn_brainscales2.recording import RecordingError


def _record_network(readout_interval=2.0):
    """A neuron driven by a SpikeSourceArray, spikes and v recorded; returns the population."""
    sim.setup(chip=sim.VirtualChip.ideal())
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[5.0, 10.0, 15.0]), label="src")
    p = sim.Population(3, sim.IF_curr_exp(tau_m=10.0, v_rest=-65.0, v_thresh=-55.0), label="cells")
    sim.Projection(src, p, sim.AllToAllConnector(), sim.StaticSynapse(weight=2.0))
    p.record(["spikes", "v"], sampling_interval=readout_interval)
    sim.run(40.0)
    return p


@pytest.mark.parametrize("suffix", [".pkl", ".mat", ".h5", ".nix"])
def test_write_data_round_trip(tmp_path, suffix):
    if suffix in (".h5", ".nix"):
        pytest.importorskip("nixio")
    if suffix == ".mat":
        pytest.importorskip("scipy")
    p = _record_network()
    block = p.get_data()
    v = block.segments[0].filter(name="v")[0]
    n_spikes = [len(st) for st in block.segments[0].spiketrains]
    path = tmp_path / f"out{suffix}"
    p.write_data(str(path))
    sim.end()
    assert path.exists() and path.stat().st_size > 0
    io = get_io(str(path))
    back = io.read_block() if hasattr(io, "read_block") else io.read()[0]
    if hasattr(io, "close"):
        io.close()
    seg = back.segments[0]
    signals = [s for s in seg.analogsignals if s.name == "v"] or seg.analogsignals
    got = signals[0]
    assert got.shape == v.shape
    assert np.allclose(np.asarray(got.magnitude), v.magnitude)
    assert float(got.sampling_period.rescale("ms").magnitude) == pytest.approx(2.0)
    assert [len(st) for st in seg.spiketrains] == n_spikes
    assert max(n_spikes) >= 1  # the neurons fired: the data hold something to compare


def test_assembly_as_projection_source():
    """An Assembly of two source populations drives a population: each source's spikes reach
    the neuron (the same PSP as from a single population)."""
    sim.setup(chip=sim.VirtualChip.ideal())
    a = sim.Population(1, sim.SpikeSourceArray(spike_times=[5.0]), label="a")
    b = sim.Population(2, sim.SpikeSourceArray(spike_times=[105.0]), label="b")
    p = sim.Population(1, sim.IF_curr_exp(v_rest=-65.0, v_thresh=-40.0), label="p")
    prj = sim.Projection(a + b, p, sim.AllToAllConnector(), sim.StaticSynapse(weight=0.5))
    assert len(prj) == 3
    p.record("v", sampling_interval=0.1)
    sim.run(140.0)
    v = p.get_data().segments[0].filter(name="v")[0].magnitude[:, 0]
    sim.end()
    t = np.arange(v.size) * 0.1
    peak_a = v[(t > 5) & (t < 105)].max() + 65.0
    peak_b = v[t > 105].max() + 65.0  # the PSP of a has decayed to < 1 % by then
    assert peak_a > 0.5
    assert peak_b == pytest.approx(2 * peak_a, rel=0.05)  # two sources of b, one of a


def test_hxneuron_native_parameters():
    """HXNeuron takes CapMem values directly (no calibration): a strong bias current makes it
    fire regularly, without it stays silent; weights are integer steps."""
    sim.setup(chip=sim.VirtualChip.ideal())
    params = dict(enable_bias_current=1, i_bias_const=800, v_threshold=500, v_leak=300, v_reset=300)
    fire = sim.Population(1, sim.HXNeuron(**params), label="fire")
    quiet = sim.Population(1, sim.HXNeuron(**{**params, "enable_bias_current": 0}), label="quiet")
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[5.0]))
    sim.Projection(src, quiet, sim.AllToAllConnector(), sim.StaticSynapse(weight=63))
    assert quiet.get("i_bias_const") == 800
    fire.record("spikes")
    quiet.record(["spikes", "v"])
    sim.run(50.0)
    n_fire = len(fire.get_data().segments[0].spiketrains[0])
    seg = quiet.get_data().segments[0]
    v = seg.filter(name="v")[0].magnitude[:, 0]
    sim.end()
    assert n_fire >= 3
    assert len(seg.spiketrains[0]) == 0
    assert v.max() - v[:2].mean() > 1.0  # the 63-step input raised the membrane


def test_hxneuron_rejects_fractional_weights():
    sim.setup(chip=sim.VirtualChip.ideal())
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[5.0]))
    p = sim.Population(1, sim.HXNeuron())
    sim.Projection(src, p, sim.AllToAllConnector(), sim.StaticSynapse(weight=2.5))
    with pytest.raises(errors.ParameterRangeError, match="integer"):
        sim.run(10.0)
    sim.end()


def test_madc_parity_clash():
    """The MADC reads one even and one odd circuit: two neurons on circuits of equal parity
    cannot both be recorded finely."""
    sim.setup(chip=sim.VirtualChip.ideal())
    p = sim.Population(4, sim.IF_curr_exp(), label="cells")
    p[0:1].record("v", sampling_interval=0.1)
    p[2:3].record("v", sampling_interval=0.1)
    with pytest.raises(RecordingError, match="even|odd") as err:
        sim.run(5.0)
    assert isinstance(err.value, errors.BrainScaleS2Error)
    sim.end()
    # an even/odd pair works
    sim.setup(chip=sim.VirtualChip.ideal())
    p = sim.Population(4, sim.IF_curr_exp(), label="cells")
    p[0:2].record("v", sampling_interval=0.1)
    sim.run(5.0)
    v = p.get_data().segments[0].filter(name="v")[0]
    sim.end()
    assert v.shape[1] == 2 and float(v.sampling_period.magnitude) == pytest.approx(0.1)
