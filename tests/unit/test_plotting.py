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
