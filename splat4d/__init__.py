"""splat4d: 3D Gaussian splatting from one image or a short video (see README.md)."""

import os

# Thread policy (issue 13). torch's OpenMP pool and numba's tile kernels take turns within every fit step; by default
# OpenMP threads spin-wait after each parallel region, so on a machine shared with another process (the test suite
# beside a run, two runs) the idle pool's spinning threads steal the cores the working pool needs, and steps become
# 3-10x slower (tools/bench_threads.py). Passive waiting (threads sleep) removes that collapse. It must be set before
# torch is imported (libgomp reads it when loaded): importing splat4d first does that; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
