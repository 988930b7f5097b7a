"""Smoke test of the placement map."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pynn_brainscales2.mapping import (  # noqa: E402
    EXTERNAL,
    INHIBITORY,
    NetworkSpec,
    PopulationSpec,
    ProjectionSpec,
    map_network,
)
from pynn_brainscales2.plotting import plot_placement  # noqa: E402


def _mapping():
    spec = NetworkSpec(
        (PopulationSpec("in", 10, EXTERNAL), PopulationSpec("exc", 200), PopulationSpec("inh", 100)),
        (
            ProjectionSpec("in->exc", "in", "exc", np.arange(10), np.arange(10), np.full(10, 30)),
            ProjectionSpec(
                "inh->exc", "inh", "exc", np.arange(100), np.arange(100), np.full(100, 30), INHIBITORY
            ),
        ),
    )
    return map_network(spec)


def test_plot_placement_writes_png(tmp_path):
    fig = plot_placement(_mapping())
    path = tmp_path / "placement.png"
    fig.savefig(path)
    plt.close(fig)
    assert path.stat().st_size > 5000
    image = plt.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100


def test_plot_placement_into_one_axes_labels_row_usage():
    fig, ax = plt.subplots()
    assert plot_placement(_mapping(), ax=ax) is fig
    labels = [t.get_text() for t in ax.get_yticklabels()]
    plt.close(fig)
    # one-to-one inputs: one exc row for "in"; 110 sources make two groups of labels,
    # each with its own inhibitory row; nothing targets hemisphere 1 ("inh" lives there)
    assert labels == ["hemisphere 0\n1 exc + 2 inh rows", "hemisphere 1\n0 exc + 0 inh rows"]


def _recorded_block():
    import pynn_brainscales2 as sim

    sim.setup(timestep=0.1, chip=sim.VirtualChip.ideal())
    p = sim.Population(2, sim.IF_curr_exp(i_offset=[0.8, 1.0]))  # MADC: up to 2 neurons
    p.record(["spikes", "v"])
    sim.run(100.0)
    block = p.get_data()
    sim.end()
    return block


def test_raster_and_membrane_from_neo(tmp_path):
    from pynn_brainscales2.plotting import plot_membrane, plot_raster

    block = _recorded_block()
    fig, (a, b) = plt.subplots(2, 1)
    plot_raster(block, ax=a)
    plot_membrane(block, ax=b)
    n_spikes = sum(len(t) for t in block.segments[0].spiketrains)
    assert n_spikes > 3
    assert len(a.lines) == 2 and sum(len(line.get_xdata()) for line in a.lines) == n_spikes
    assert len(b.lines) == 2 and "mV" in b.get_ylabel()
    fig.savefig(tmp_path / "neo.png")
    plt.close(fig)
    with np.testing.assert_raises(KeyError):
        plot_membrane(block, name="gsyn_exc")


def test_pynn_utility_plotting_works_on_our_data(tmp_path):
    from pyNN.utility.plotting import Figure, Panel

    block = _recorded_block()
    seg = block.segments[0]
    path = tmp_path / "pynn_plotting.png"
    Figure(
        Panel(seg.filter(name="v")[0], ylabel="Membrane potential (mV)"),
        Panel(seg.spiketrains, xlabel="Time (ms)", xticks=True),
    ).save(str(path))
    assert path.stat().st_size > 5000
