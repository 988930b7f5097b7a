"""PyNN backend for the (virtual) BrainScaleS-2 chip.

>>> import pynn_brainscales2 as sim
>>> sim.setup(chip=sim.VirtualChip.ideal())
0
>>> p = sim.Population(1, sim.IF_curr_exp(i_offset=1.0))
>>> p.record("spikes")
>>> sim.run(50.0)
50.0
>>> len(p.get_data().segments[0].spiketrains[0]) > 0
True
>>> sim.end()

See docs/pynn.md for units, the translation onto the chip and what is supported.
"""

from pyNN import errors, random, space  # noqa: F401
from pyNN.connectors import *  # noqa: F403
from pyNN.network import Network  # noqa: F401
from pyNN.random import GSLRNG, NumpyRNG, RandomDistribution  # noqa: F401
from pyNN.recording import *  # noqa: F403
from pyNN.space import Space  # noqa: F401
from pyNN.standardmodels import StandardCellType

from cysim import VirtualChip  # noqa: F401  (re-exported: sim.VirtualChip)

from . import io  # noqa: F401  (format bridges; io.nir loads on first use)
from .control import (  # noqa: F401
    end,
    get_current_time,
    get_max_delay,
    get_min_delay,
    get_time_step,
    initialize,
    num_processes,
    portability_report,
    rank,
    reset,
    run,
    run_for,
    run_until,
    setup,
)
from .execution.sweep import parameter_sweep  # noqa: F401
from .plasticity import PlasticityRule, PlasticityWarning, SensorSettings, STDPRule, Timer  # noqa: F401
from .populations import Assembly, Population, PopulationView  # noqa: F401
from .procedural_api import connect, create, record, record_gsyn, record_v  # noqa: F401
from .projections import Projection  # noqa: F401
from .simulator import PortabilityWarning, QuantisationWarning  # noqa: F401
from .standardmodels.cells import *  # noqa: F403
from .standardmodels.cells import HXNeuron, SpikeSourcePoissonOnChip  # noqa: F401
from .standardmodels.electrodes import *  # noqa: F403
from .standardmodels.synapses import *  # noqa: F403

__version__ = "0.1.0"


def list_standard_models():
    """Names of the StandardCellType classes this backend can run."""
    return [
        name for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, StandardCellType)
    ]
