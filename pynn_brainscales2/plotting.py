"""Figures with matplotlib: rasters and membrane traces from the Neo data the backend
returns, and the chip's placement map.

PyNN's own ``pyNN.utility.plotting`` (``Figure``, ``Panel``) works on the same Neo data.

The module imports matplotlib only when a function is called, so the backend works
without a display (use a non-interactive backend such as ``Agg`` on servers).
"""

from __future__ import annotations

import numpy as np

from . import hardware as hw


def plot_placement(mapping, ax=None):
    """Draw where a mapped network sits on the chip.

    Left: the 2 x 256 neuron circuits (one row per hemisphere), coloured by population.
    Right: the 256 synapse rows of each hemisphere, coloured by row mode (excitatory,
    inhibitory, off).

    Parameters
    ----------
    mapping : pynn_brainscales2.mapping.MappingResult
        A mapped network.
    ax : matplotlib Axes or sequence of two Axes, optional
        Where to draw: two axes (circuits, rows), or one axes (circuits only, row usage
        in the labels). Default: a new figure with two axes.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if ax is None:
        fig, axes = plt.subplots(
            1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [4, 1]}, constrained_layout=True
        )
    else:
        axes = list(ax) if np.iterable(ax) else [ax]
        fig = axes[0].figure
    spec = mapping.spec
    pop_of = np.asarray(mapping.placement.population_of_circuit)
    neuron_pops = [i for i, p in enumerate(spec.populations) if p.kind == "neuron"]
    colours = plt.get_cmap("tab20")(np.arange(max(len(neuron_pops), 1)) % 20)
    image = np.zeros(hw.N_CIRCUITS, dtype=np.int64)  # 0: free
    for k, i in enumerate(neuron_pops):
        image[pop_of == i] = k + 1
    cmap = ListedColormap(np.vstack([[0.92, 0.92, 0.92, 1.0], colours]))
    circ_ax = axes[0]
    circ_ax.imshow(
        image.reshape(hw.N_HEMISPHERES, hw.N_COLUMNS),
        aspect="auto",
        cmap=cmap,
        vmin=0,
        vmax=len(neuron_pops) + 0.999,
        interpolation="nearest",
        extent=(-0.5, hw.N_COLUMNS - 0.5, hw.N_HEMISPHERES - 0.5, -0.5),
    )
    modes = np.asarray(mapping.routing.row_modes)
    n_exc = np.count_nonzero(modes == hw.ROW_EXC, axis=1)
    n_inh = np.count_nonzero(modes == hw.ROW_INH, axis=1)
    circ_ax.set_yticks(range(hw.N_HEMISPHERES))
    circ_ax.set_yticklabels(
        [f"hemisphere {h}\n{n_exc[h]} exc + {n_inh[h]} inh rows" for h in range(hw.N_HEMISPHERES)]
    )
    circ_ax.set_xlabel("neuron circuit (column)")
    circ_ax.set_title(f"placement: {mapping.placement.n_used} of {hw.N_CIRCUITS} circuits")
    handles = [Patch(color=colours[k], label=spec.populations[i].label) for k, i in enumerate(neuron_pops)]
    if handles:
        circ_ax.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(0, -0.25), ncol=min(6, len(handles))
        )
    if len(axes) > 1:
        row_ax = axes[1]
        row_cmap = ListedColormap([[0.92, 0.92, 0.92], [0.84, 0.15, 0.16], [0.12, 0.47, 0.71]])
        row_ax.imshow(modes.T, aspect="auto", cmap=row_cmap, vmin=0, vmax=2, interpolation="nearest")
        row_ax.set_xticks(range(hw.N_HEMISPHERES))
        row_ax.set_xlabel("hemisphere")
        row_ax.set_ylabel("synapse row")
        row_ax.set_title("synapse rows")
        row_ax.legend(
            handles=[
                Patch(color=row_cmap(1), label="excitatory"),
                Patch(color=row_cmap(2), label="inhibitory"),
            ],
            loc="upper left",
            bbox_to_anchor=(0, -0.25),
        )
    return fig


def _segment(data, segment: int):
    """A Neo Segment from a Block (``segment``-th) or a Segment."""
    segments = getattr(data, "segments", None)
    return segments[segment] if segments is not None else data


def plot_raster(data, ax=None, segment: int = 0, color="k", markersize: float = 2.0, label=None):
    """Spike raster of a population's recording.

    Parameters
    ----------
    data : neo.Block or neo.Segment
        What ``Population.get_data()`` returns (a Block: its ``segment``-th Segment is drawn).
    ax : matplotlib Axes, optional
        Default: a new figure.
    segment : index of the Segment of a Block.
    color, markersize : marker style.
    label : y-axis label (default ``"neuron"``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    seg = _segment(data, segment)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    for i, train in enumerate(seg.spiketrains):
        t = train.rescale("ms").magnitude
        ax.plot(t, np.full(t.shape, i), "|", color=color, markersize=markersize)
    if seg.spiketrains:
        ax.set_xlim(
            float(seg.spiketrains[0].t_start.rescale("ms")), float(seg.spiketrains[0].t_stop.rescale("ms"))
        )
    ax.set_xlabel("time [ms]")
    ax.set_ylabel(label or "neuron")
    return ax


def plot_membrane(data, ax=None, segment: int = 0, name: str = "v", channels=None, **style):
    """Membrane (or conductance) traces of a population's recording.

    Parameters
    ----------
    data : neo.Block or neo.Segment
    ax : matplotlib Axes, optional
    segment : index of the Segment of a Block.
    name : the recorded variable (``"v"``, ``"gsyn_exc"``, ...).
    channels : indices of the channels to draw (default: all).
    style : passed to ``Axes.plot``.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    KeyError
        if the Segment holds no signal called ``name``.
    """
    import matplotlib.pyplot as plt

    seg = _segment(data, segment)
    signals = [a for a in seg.analogsignals if a.name == name]
    if not signals:
        have = sorted({a.name for a in seg.analogsignals})
        raise KeyError(f"no recorded signal {name!r} in this segment; recorded: {have or 'none'}")
    sig = signals[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    idx = range(sig.shape[1]) if channels is None else channels
    t = sig.times.rescale("ms").magnitude
    for i in idx:
        ax.plot(t, sig.magnitude[:, i], **style)
    ax.set_xlabel("time [ms]")
    ax.set_ylabel(f"{name} [{sig.units.dimensionality.string}]")
    return ax
