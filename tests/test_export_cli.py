"""`splat4d export FORMAT`: the command group, its scene conversions and its errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from splat4d.cli import main
from splat4d.export import FORMATS, read_scene
from splat4d.io.ply import read_ply, write_ply
from splat4d.synthetic import random_scene


def test_export_help_lists_every_format(capsys):
    main(["export", "--help"])
    out = capsys.readouterr().out
    for name, (cls, _) in FORMATS.items():
        assert name in out and cls.__doc__.strip().splitlines()[0][:40] in out
    assert {"ply", "splat", "spz", "compressed-ply", "nerfstudio"} <= set(FORMATS)


def test_ply_to_splat_and_back_within_the_splat_quantisation(tmp_path, capsys):
    scene = random_scene(300, seed=7)
    write_ply(scene, tmp_path / "a.ply")
    main(["export", "splat", str(tmp_path / "a.ply"), str(tmp_path / "b.splat")])
    main(["export", "ply", str(tmp_path / "b.splat"), str(tmp_path / "c.ply")])
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "b.splat").stat().st_size == 32 * len(scene)
    back = read_ply(tmp_path / "c.ply")
    # .splat stores the Gaussians sorted (most visible first): compare in one order, by position.
    order = lambda s: torch.from_numpy(np.lexsort(s.means.numpy().T[::-1]))  # noqa: E731
    back, scene = back.select(order(back)), scene.select(order(scene))
    assert torch.equal(back.means, scene.means)  # float32 positions
    assert torch.allclose(back.scales_act(), scene.scales_act(), rtol=1e-5)  # float32 scales
    # 8-bit colour and opacity: within half a step (plus the logit/sigmoid round trip).
    assert (back.opacities_act() - scene.opacities_act()).abs().max() <= 0.5 / 255 + 1e-4
    rgb = lambda s: (s.sh0[:, 0] * 0.28209479177387814 + 0.5).clamp(0, 1)  # noqa: E731
    assert (rgb(back) - rgb(scene)).abs().max() <= 0.5 / 255 + 1e-4
    # Every reader accepts what the other format wrote: info reads both.
    assert main(["info", str(tmp_path / "b.splat")])["gaussians"] == len(scene)


def test_export_errors_are_one_line(tmp_path):
    bad = tmp_path / "scene.obj"
    bad.write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match="unknown scene format"):
        read_scene(bad)
    for args, message in ((["export", "gltf", "a", "b"], "unknown export format 'gltf'"),
                          (["export", "ply", str(bad), str(tmp_path / "x.ply")], "unknown scene format '.obj'"),
                          (["export", "ply", str(tmp_path / "none.ply"), str(tmp_path / "x.ply")], "not found")):
        res = subprocess.run([sys.executable, "-m", "splat4d", *args], capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "x.ply").exists()
    truncated = tmp_path / "t.splat"
    truncated.write_bytes(np.zeros(33, np.uint8).tobytes())
    res = subprocess.run([sys.executable, "-m", "splat4d", "export", "ply", str(truncated), str(tmp_path / "x.ply")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "not a .splat file" in res.stderr


def test_export_nerfstudio_keeps_its_older_spelling(tmp_path):
    from splat4d.export import ExportNerfstudioArgs
    from splat4d.cli import _parse

    old = _parse("export-nerfstudio", ["run", "out"])
    new = _parse("export", ["nerfstudio", "run", "out"])
    assert old[0] is new[0] and old[1] == new[1] == ExportNerfstudioArgs(Path("run"), Path("out"))
