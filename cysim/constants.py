"""Facts of the BrainScaleS-2 chip as the virtual chip implements them.

Everything here is a property of the (virtual) silicon, in hardware units:
time in microseconds of hardware time (``_us``), membrane voltages in volts (``_v``),
readout values in ADC least significant bits (``_lsb``), analog settings in CapMem
units (``_capmem``).
"""

# --- geometry -------------------------------------------------------------------------
N_HEMISPHERES = 2
N_COLUMNS = 256  # neuron circuits (and synapse columns) per hemisphere
N_CIRCUITS = N_HEMISPHERES * N_COLUMNS  # 512
N_ROWS = 256  # synapse rows per hemisphere
N_DRIVERS = 128  # synapse drivers per hemisphere, each drives two rows
ROWS_PER_DRIVER = 2
N_PADI_BUSES = 4  # per hemisphere; driver d listens to bus d % 4
N_BUSES = N_HEMISPHERES * N_PADI_BUSES  # 8 event buses on the chip
N_BACKGROUND_GENERATORS = 8
MAX_COMPARTMENTS = 64  # circuits joined into one logical (multi-compartment) neuron

# --- bit widths -----------------------------------------------------------------------
WEIGHT_MAX = 63  # 6-bit synapse weight
LABEL_MAX = 63  # 6-bit synapse label
ROW_SELECT_MAX = 31  # 5-bit row-select address on the PADI bus
ADDRESS_BITS = 11  # row select (5) + synapse label (6)
ADDRESS_MAX = (1 << ADDRESS_BITS) - 1
EVENT_LABEL_MAX = N_BUSES * (1 << ADDRESS_BITS) - 1  # bus (3 bit) + address (11 bit)
CAPMEM_MAX = 1022  # 10-bit capacitive memory cell, 1023 is reserved
CADC_MAX = 255  # 8-bit
MADC_MAX = 1023  # 10-bit

# --- synapse row modes ----------------------------------------------------------------
ROW_OFF = 0
ROW_EXC = 1
ROW_INH = 2

# --- background generator modes -------------------------------------------------------
BG_OFF = 0
BG_POISSON = 1
BG_REGULAR = 2
BG_CLOCK_US = 0.004  # 250 MHz
BG_PERIOD_MAX_CYCLES = 65535

# --- timing ---------------------------------------------------------------------------
FPGA_TICK_US = 0.008  # spike timestamps at 125 MHz
ROUTING_LATENCY_US = 0.1  # fixed latency of every event from its source to the synapse
CADC_PERIOD_MIN_US = 1.7  # all 512 channels in parallel, one sample every ~1.7 us
CADC_PERIOD_MAX_US = 1000.0
CADC_PERIOD_DEFAULT_US = 1.7
MADC_PERIOD_US = 1.0 / 30.0  # 30 MSample/s, ~34 ns
MADC_MAX_CHANNELS = 2  # one even and one odd column
DT_DEFAULT_US = 0.1
DT_MIN_US = 0.001
DT_MAX_US = 0.1

# --- analog ranges --------------------------------------------------------------------
V_RAIL_V = 1.2  # membrane voltage is confined to [0, V_RAIL_V]
CADC_LSB_PER_V = 256.0 / V_RAIL_V  # nominal readout gain
MADC_LSB_PER_V = 1024.0 / V_RAIL_V

# calibratable ranges (hardware units), published for the real chip
TAU_MEM_RANGE_US = (0.5, 60.0)
TAU_SYN_RANGE_US = (0.3, 30.0)
REFRACTORY_RANGE_US = (0.04, 32.0)
LEAK_RANGE_LSB = (50.0, 160.0)
RESET_RANGE_LSB = (50.0, 160.0)
THRESHOLD_RANGE_LSB = (50.0, 220.0)
CADC_RELIABLE_RANGE_LSB = (30.0, 210.0)

# --- plasticity: correlation sensors, rate counters, short-term plasticity ------------
# Nominal transfer functions (before mismatch; see cysim/physics.py), with c the CapMem
# value 0..1022:
#   correlation time constant  tau(c) = CORR_TAU_MAX_US * (CORR_TAU_MIN_US / CORR_TAU_MAX_US) ** (c / 1022)
#   correlation amplitude      eta(c) = CORR_AMP_MAX_LSB * c / 1022  (sensor LSB per pair at zero delay)
#   STP utilisation            U(c)   = c / 1022
#   STP time constants         tau(c) = STP_TAU_MAX_US * (STP_TAU_MIN_US / STP_TAU_MAX_US) ** (c / 1022)
CORR_TAU_MAX_US = 200.0  # correlation sensor time constant at CapMem 0
CORR_TAU_MIN_US = 1.0  # ... at CapMem 1022
CORR_AMP_MAX_LSB = 255.0  # increment of one pair at zero delay, at CapMem 1022
CORR_MAX = 255  # 8-bit sensor readout; the analog store saturates at full scale
SPIKE_COUNTER_MAX = 255  # 8-bit saturating spike (rate) counter per circuit
STP_TAU_MAX_US = 1000.0  # STP recovery / facilitation time constant at CapMem 0
STP_TAU_MIN_US = 1.0  # ... at CapMem 1022

# CapMem cells of one neuron circuit (all 0..CAPMEM_MAX)
CAPMEM_FIELDS = (
    "v_leak",  # leak potential
    "v_reset",  # reset potential
    "v_threshold",  # spike threshold comparator
    "i_bias_leak",  # leak conductance -> tau_mem
    "i_bias_syn_exc",  # excitatory synaptic input time constant
    "i_bias_syn_inh",  # inhibitory synaptic input time constant
    "i_syn_gm_exc",  # excitatory synaptic gain (current per weight step)
    "i_syn_gm_inh",  # inhibitory synaptic gain
    "refractory_time",  # refractory counter setting
    "v_exp",  # exponential term threshold V_T
    "i_exp",  # exponential term slope factor Delta_T
    "i_adapt_a",  # subthreshold adaptation conductance a
    "i_adapt_b",  # spike-triggered adaptation increment b
    "i_adapt_tau",  # adaptation time constant tau_w
    "i_bias_const",  # constant bias current onto the membrane
    "e_rev_exc",  # excitatory reversal potential (conductance-based mode)
    "e_rev_inh",  # inhibitory reversal potential (conductance-based mode)
)

# per-circuit switches
SWITCH_FIELDS = (
    "enable_spiking",  # threshold comparator fires and resets
    "enable_exponential",  # AdEx exponential term
    "enable_adaptation",  # AdEx adaptation current
    "enable_coba",  # conductance-based synaptic input
    "enable_bias_current",  # constant bias current on
    "bias_current_sink",  # the bias current drains instead of sources
    "enable_output",  # spikes leave the circuit as events
)


def circuit_of(hemisphere: int, column: int) -> int:
    """Global circuit index of ``column`` in ``hemisphere``."""
    return hemisphere * N_COLUMNS + column


def event_label(bus: int, row_select: int, synapse_label: int) -> int:
    """14-bit event label: PADI ``bus`` (0..7, hemisphere * 4 + bus), 5-bit row-select
    address matched by the synapse drivers and 6-bit label matched by the synapses."""
    return (bus << ADDRESS_BITS) | (row_select << 6) | synapse_label
