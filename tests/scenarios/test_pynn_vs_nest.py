"""``benchmarks/pynn_vs_nest.py`` in its quick mode: one PyNN script on pyNN.nest and on
the virtual chip (skipped when NEST is not installed; NEST is not a dependency).

No timing is asserted (the machine is shared); the rates are: the ideal chip runs the same
network as NEST, so its mean rate must be close (the full benchmark, 5 x 2 s, agrees
within 2 %; 200 ms of one drive fluctuate more).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nest", reason="NEST (pip install nest-simulator) is not installed")
pytest.importorskip("pyNN.nest")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pynn_vs_nest.py"


@pytest.mark.slow
def test_benchmark_runs_in_quick_mode(tmp_path):
    env = {**os.environ, "PYNN_BRAINSCALES2_CACHE": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    out = json.loads(last[len("RESULT ") :])
    for name in ("nest", "nest_off_grid", "ideal", "realistic"):
        for key in ("build_s", "run_s", "rate_hz", "rate_exc_hz", "rate_inh_hz"):
            assert out[name][key] >= 0, (name, key)
        assert out[name]["rate_hz"] > 1.0  # the network is active
    assert out["ideal"]["first_run_s"] > 0 and out["realistic"]["first_run_s"] > 0
    assert out["speedup_vs_nest"] > 0 and out["speedup_vs_nest_realistic"] > 0
    assert out["neurons"] == 500 and out["synapses"] == 500 * 50 + 500
    assert abs(out["rate_rel_diff_ideal"]) < 0.2
