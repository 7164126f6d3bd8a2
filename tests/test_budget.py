"""Memory bound (issue 14): a run's peak is estimated from its settings before it starts, and a run that would not
fit in the memory free is refused in one line naming the setting to lower and a value that fits."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splat4d import budget
from splat4d.cli import main
from splat4d.config import RunConfig, load_preset

COFFEE = Path(__file__).resolve().parents[1] / "splat4d" / "assets" / "coffee.jpg"


def config(resolution: int, **kw) -> RunConfig:
    cfg = replace(load_preset("default"), input=COFFEE, **kw)
    return replace(cfg, load=replace(cfg.load, resolution=resolution))


def test_the_estimate_grows_with_resolution_frames_and_the_gaussian_cap():
    sizes = [budget.estimate_run(config(r), "image").peak_bytes for r in (128, 256, 512, 1024)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    more_frames = replace(config(256), motion=replace(RunConfig().motion, max_frames=64))
    assert budget.estimate_run(more_frames, "motion").peak_bytes > budget.estimate_run(config(256), "motion").peak_bytes
    capped = replace(config(128), fit=replace(config(128).fit, max_gaussians=1_000_000))
    assert budget.estimate_run(capped, "image").gaussians == 1_000_000
    # The input's own size, from its header (no decoding): a photo under the loader's cap is loaded whole.
    height, width = np.asarray(Image.open(COFFEE)).shape[:2]
    assert budget.input_size(COFFEE) == (width, height)
    assert budget.estimate_run(config(256), "image").loaded_pixels == width * height


def test_a_run_over_the_budget_is_refused_before_it_starts(tmp_path, monkeypatch, capsys):
    need = budget.estimate_run(config(1024), "image").peak_bytes
    monkeypatch.setenv("SPLAT4D_MEMORY_GB", str(need / 2 / 1e9))
    with pytest.raises(SystemExit) as stop:
        main(["run", str(COFFEE), "--out", str(tmp_path / "out"), "--load.resolution", "1024", "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: this run would need about")
    assert not (tmp_path / "out").exists()  # refused before anything was written
    suggested = int(lines[0].split("--load.resolution (")[1].split(" fits")[0])
    assert budget.estimate_run(config(suggested), "image").peak_bytes <= need / 2
    assert budget.estimate_run(config(suggested + 16), "image").peak_bytes > need / 2
    monkeypatch.setenv("SPLAT4D_MEMORY_GB", str(need * 2 / 1e9))
    assert budget.check(config(1024), "image").peak_bytes == need
