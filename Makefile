# Two entry points for a fresh machine (see README): `make demo` and `make test`. Both install into a project
# virtual environment (.venv), so a stock Debian/Ubuntu Python (which refuses system-wide pip installs, PEP 668) works.
SYSTEM_PY ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
PIP = $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test bench browser test-nerfstudio

$(PY):
	# Debian/Ubuntu ship venv support separately (python3-venv): install it when it is missing and we may.
	$(SYSTEM_PY) -m venv $(VENV) || { rm -rf $(VENV) && apt-get update -qq && apt-get install -y -qq python3-venv \
		&& $(SYSTEM_PY) -m venv $(VENV); }

install: $(PY)
	# torch first, pinned: 2.13.0 is a CPU build on this workplace's disk; a bare `torch` pulls a multi-GB CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e ".[test]"
	# compile the CPU rasterizer's numba kernels once (cached on disk): a first run then starts as fast as any other
	$(PY) -m splat4d.render.cpu

demo: install
	$(PY) -m splat4d run splat4d/assets/coffee.jpg --out out/coffee
	@echo "open out/coffee/orbit.mp4 (video) or out/coffee/scene.ply (any splat viewer)"

test: install browser
	$(PY) -m pytest -q

browser:
	# Debian chromium for the viewer test (it skips, saying why, where chromium cannot be installed).
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser viewer test will be skipped"

bench: install
	$(PY) tools/bench_raster.py
	$(PY) tools/bench_pipeline.py

# nerfstudio plug-in tests, in nerfstudio's own environment (it pins gsplat 1.4.0 / viser 0.2.7 and needs torchvision,
# which does not import beside CPU torch 2.13.0). Optional: several GB, about 6 minutes; `make test` skips these tests.
NS_ENV ?= .venv-nerfstudio
test-nerfstudio:
	test -x $(NS_ENV)/bin/python || $(SYSTEM_PY) -m venv $(NS_ENV)
	$(NS_ENV)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(NS_ENV)/bin/python -m pip install --quiet --disable-pip-version-check nerfstudio==1.1.5 numba pytest
	$(NS_ENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(NS_ENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_nerfstudio_plugin.py \
		tests/test_viewer_nerfstudio.py -k "nerfstudio and not chromium"
