# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PY ?= python3
PIP = $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test bench

install:
	# torch first, pinned: 2.13.0 is a CPU build on this workplace's disk; a bare `torch` pulls a multi-GB CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e ".[test]"

demo: install
	$(PY) -m splat4d render splat4d/assets/example_scene.ply --path orbit --frames 120 --out out/example_orbit.mp4

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) tools/bench_raster.py
