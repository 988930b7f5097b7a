"""Neo blocks recorded with the PyNN backend (ideal chip) -> tensors of the torch bridge."""

import neo
import numpy as np
import pytest
import quantities as pq
import torch

import pynn_brainscales2 as sim
from pynn_brainscales2.errors import ShapeError
from pynn_brainscales2.snn import LIF, Experiment, InputNeuron, Synapse, run
from pynn_brainscales2.snn.io import block_to_tensors

SOURCE_TIMES = [[1.0, 5.0], [2.0], [3.3, 7.7]]  # [ms]
RUNTIME_MS = 20.0


@pytest.fixture(scope="module")
def recorded():
    """3 spike sources -> 4 LIF neurons on the ideal chip, two runs (two segments);
    neuron 3 gets no input, ``v`` recorded for neurons 0..2 only."""
    sim.setup(timestep=0.1, chip=sim.VirtualChip.ideal())
    src = sim.Population(3, sim.SpikeSourceArray(spike_times=SOURCE_TIMES), label="src")
    pop = sim.Population(4, sim.IF_curr_exp(tau_m=10.0, tau_syn_E=5.0, v_thresh=-55.0), label="lif")
    conn = [(i, j, 2.0, 0.1) for i in range(3) for j in range(3)]
    sim.Projection(src, pop, sim.FromListConnector(conn), sim.StaticSynapse())
    src.record("spikes")
    pop.record("spikes")
    pop[0:3].record("v", sampling_interval=1.7)
    sim.run(RUNTIME_MS)
    sim.reset()
    sim.run(RUNTIME_MS)
    blocks = {"src": src.get_data(), "lif": pop.get_data()}
    sim.end()
    return blocks


def test_source_spikes_land_on_their_grid_steps(recorded):
    out = block_to_tensors(recorded["src"], dt_us=0.1)
    assert out.population == "src"
    assert out.spikes.shape == (200, 2, 3)  # 20 us hardware time / 0.1 us; 2 segments; 3 sources
    assert out.v is None
    for b in range(2):
        for k, times in enumerate(SOURCE_TIMES):
            steps = out.spikes[:, b, k].nonzero().flatten().tolist()
            assert steps == [round(t / 0.1) for t in times]  # 1 ms bio = 1 us hardware at speedup 1000


def test_neuron_spikes_and_membrane_match_the_recording(recorded):
    block = recorded["lif"]
    out = block_to_tensors(block, dt_us=0.1)
    assert out.spikes.shape == (200, 2, 4) and out.v.shape == (200, 2, 4)
    assert out.recorded.tolist() == [True, True, True, True]
    for b, seg in enumerate(block.segments):
        trains = {t.annotations["source_index"]: t for t in seg.spiketrains}
        assert len(trains[0]) > 0, "the network should spike"
        for k in range(4):
            expected = np.rint(trains[k].rescale("ms").magnitude / 0.1).astype(int)
            got = out.spikes[:, b, k]
            assert got.sum().item() == len(trains[k])
            assert sorted(got.nonzero().flatten().tolist()) == sorted(expected.tolist())
        sig = seg.analogsignals[0]
        # at the CADC sample times the interpolated trace is the recorded value
        sample_steps = np.rint(sig.times.rescale("ms").magnitude / 0.1).astype(int)
        inside = sample_steps < 200
        for col, k in enumerate(sig.array_annotations["channel_index"]):
            expected = torch.tensor(sig.magnitude[inside, col], dtype=torch.float32)
            assert torch.allclose(out.v[sample_steps[inside], b, k], expected, atol=1e-5)
        assert torch.all(out.v[:, b, 3] == 0.0)  # v not recorded for neuron 3
    # identical runs after reset on the ideal chip: both segments agree
    assert torch.equal(out.spikes[:, 0], out.spikes[:, 1])


def test_grid_options_and_speedup(recorded):
    out = block_to_tensors(recorded["src"], dt_us=0.5, size=5, runtime_us=7.0)
    assert out.spikes.shape == (14, 2, 5)
    assert out.recorded.tolist() == [True, True, True, False, False]
    # 3.3 us -> 6.6 -> step 7; 7.7 us -> step 15, cut off
    assert out.spikes[:, 0, 2].nonzero().flatten().tolist() == [7]
    # at speedup 500 hardware time runs half as fast: 1 ms bio -> 2 us
    slow = block_to_tensors(recorded["src"], dt_us=0.1, speedup=500.0)
    assert slow.spikes.shape[0] == 400
    assert slow.spikes[:, 0, 0].nonzero().flatten().tolist() == [20, 100]
    with pytest.raises(ShapeError, match="size = 2"):
        block_to_tensors(recorded["src"], dt_us=0.1, size=2)


def test_converted_spikes_drive_the_torch_bridge(recorded):
    spikes = block_to_tensors(recorded["src"], dt_us=0.1).spikes  # [200, 2, 3]
    exp = Experiment(mock=True, dt=0.1)
    inp = InputNeuron(3, exp)
    syn = Synapse(3, 2, exp)
    with torch.no_grad():
        syn.weight.fill_(0.5)
    lif = LIF(2, exp)
    h = lif(syn(inp(spikes)))
    run(exp, 20.0)
    assert h.v.shape == (200, 2, 2)
    assert h.v[:11].abs().max() == 0.0  # nothing before the first input spike (step 10) arrives
    assert h.v[12:].abs().max() > 0.1


def test_blocks_with_several_populations_need_a_choice():
    block = neo.Block()
    seg = neo.Segment()
    block.segments.append(seg)
    for label, times in (("a", [1.0]), ("b", [2.0, 3.0])):
        seg.spiketrains.append(
            neo.SpikeTrain(times * pq.ms, t_stop=5.0 * pq.ms, source_population=label, source_index=0)
        )
    with pytest.raises(ShapeError, match=r"\['a', 'b'\]"):
        block_to_tensors(block, dt_us=1.0)
    out = block_to_tensors(block, dt_us=1.0, population="b")
    assert out.spikes[:, 0, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
    with pytest.raises(ShapeError, match="no population 'c'"):
        block_to_tensors(block, dt_us=1.0, population="c")


def test_two_spikes_in_one_step_are_counted_and_a_bad_grid_is_refused():
    seg = neo.Segment()
    seg.spiketrains.append(neo.SpikeTrain([1.0, 1.04, 3.0] * pq.ms, t_stop=4.0 * pq.ms, source_index=0))
    out = block_to_tensors(seg, dt_us=0.5)
    assert out.spikes[:, 0, 0].tolist() == [0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="dt_us = 0"):
        block_to_tensors(seg, dt_us=0.0)
    with pytest.raises(ShapeError, match="no segments"):
        block_to_tensors(neo.Block(), dt_us=0.1)
