# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PY ?= python3
PIP = $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test bench

install:
	# torch first, pinned: 2.13.0 is a CPU build on this workplace's disk; a bare `torch` pulls a multi-GB CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e ".[test]"

demo: install
	$(PY) -m splat4d run splat4d/assets/coffee.jpg --out out/coffee
	@echo "open out/coffee/orbit.mp4 (video) or out/coffee/scene.ply (any splat viewer)"

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) tools/bench_raster.py
	$(PY) tools/bench_pipeline.py
