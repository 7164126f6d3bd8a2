"""The package as a user installs it: a wheel built from the checkout, installed outside it, run from elsewhere."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", ".venv-nerfstudio", "runs", "out", "build", "dist", "bench_results", "__pycache__",
        ".pytest_cache"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The checkout's wheel installed into a folder of its own (no editable link back to the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(src)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("splat4d-*.whl")
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return wheel, site


def test_the_wheel_ships_the_presets_and_the_example(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {Path(n).stem for n in names if n.startswith("splat4d/configs/") and n.endswith(".yaml")}
    assert presets == {p.stem for p in (ROOT / "configs").glob("*.yaml")} >= {"fast", "default", "quality"}
    assert "splat4d/assets/coffee.jpg" in names


def test_installed_wheel_runs_a_preset_from_another_directory(installed, tmp_path):
    _, site = installed
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import splat4d; print(splat4d.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site)  # the installed copy, not the checkout
    image = site / "splat4d" / "assets" / "coffee.jpg"
    res = subprocess.run([sys.executable, "-m", "splat4d", "run", str(image), "--preset", "fast", "--out", "run",
                          "--no-progress", "--load.resolution", "32", "--fit.iterations", "3", "--fit.no-densify",
                          "--prior.ring-views", "2", "--video.frames", "2", "--video.size", "32"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["preset"] == "fast" and saved["prior"]["ring_views"] == 2
    assert saved["video"]["fps"] == 30.0 and saved["load"]["resolution"] == 32
    # Values only the preset sets (fast: refine every 35 steps) reached the run.
    assert saved["fit"]["refine_every"] == 35
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["mode"] == "image"
