"""The thread policy (issue 13): both OpenMP runtimes in a splat4d process (torch's and numba's) wait passively.

libgomp reports its settings with OMP_DISPLAY_ENV=VERBOSE; GOMP_SPINCOUNT is what spin-waiting costs (300000 by
default, 0 when passive). tools/bench_threads.py measures what this buys under a parallel load.
"""

import os
import re
import subprocess
import sys

KERNELS = """
import torch
torch.ones(64, 64).sum()
import numpy as np
from splat4d.render import cpu_kernels  # numba's omp layer loads its own libgomp on the first parallel kernel
from numba import njit, prange
@njit(parallel=True)
def total(a):
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i]
    return s
total(np.ones(8))
"""


def spincounts(prelude: str, env_extra: dict | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    env.update({"OMP_DISPLAY_ENV": "VERBOSE", **(env_extra or {})})
    out = subprocess.run([sys.executable, "-c", prelude + KERNELS], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return re.findall(r"GOMP_SPINCOUNT = '(\d+)'", out.stderr)


def test_importing_splat4d_first_makes_both_openmp_pools_wait_passively():
    assert spincounts("import splat4d\n") == ["0", "0"]
    # the control: without splat4d imported first, torch's pool keeps libgomp's spinning default
    assert "300000" in spincounts("")


def test_a_wait_policy_the_user_set_wins():
    assert spincounts("import splat4d\n", {"OMP_WAIT_POLICY": "ACTIVE"}) == ["30000000000", "30000000000"]
