"""The fast subset of tools/fuzz_inputs.py (issue 14): one case per code path an input takes, through the command
line (``splat4d.cli.main`` in this process; one case in a subprocess), each ending in a finite scene or one clear
line. The whole harness: ``python tools/fuzz_inputs.py``."""

import subprocess
import sys
from pathlib import Path

import pytest


from fuzz_inputs import CASES, judge, run_case  # noqa: E402

BY_NAME = {case.name: case for case in CASES}
TINY = ("--load.resolution", "32", "--fit.iterations", "3")
"""Smaller still than the harness's settings (a case's own flags still win: fit_iterations_0)."""

FINISHING = [
    "exif_rotate_90",        # EXIF orientation applied (checked upright against the original); GrabCut masks
    "palette_transparency",  # palette PNG's transparent entry becomes the alpha mask
    "float_tiff_nan",        # float image with NaN pixels (was a traceback in k-means)
    "alpha_nearly_one",      # an opaque RGBA photo is segmented by colour, not refused (was refused)
    "truncated_mkv",         # a video cut short gives the frames before the cut (was refused)
    "fit_iterations_0",      # no fitting at all: the initial scene is written
    # (the 8000x6000 PNG: test_a_huge_png_is_read_at_a_bounded_memory; the harness runs it end to end)
]
REFUSED = [
    "alpha_nearly_zero", "truncated_jpeg", "empty_jpg", "text_as_png", "bomb_png_144mp", "folder_not_file",
    "missing_file", "frames_differ_in_size", "one_frame_folder", "truncated_mp4", "audio_as_mp4",
    "mp4_without_mode", "resolution_15",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Single-threaded kernels: on a shared machine two threads of a parallel kernel wait for each other."""
    import numba
    import torch

    threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    numba.set_num_threads(numba_threads)


@pytest.mark.parametrize("name", FINISHING)
def test_inputs_people_have_end_in_a_finite_scene(name, tmp_path):
    result = run_case(BY_NAME[name], tmp_path, in_process=True, extra=TINY)
    assert result.outcome == "ok" and result.gaussians > 0, (result.outcome, result.message, result.stderr_tail)


@pytest.mark.parametrize("name", REFUSED)
def test_unusable_inputs_end_in_one_clear_line(name, tmp_path):
    case = BY_NAME[name]
    result = run_case(case, tmp_path, in_process=True, extra=TINY)
    assert result.outcome == "error", (result.outcome, result.message, result.stderr_tail)
    assert case.error_says in result.message.lower()


def test_the_real_command_refuses_in_one_line_without_a_traceback(tmp_path):
    result = run_case(BY_NAME["text_as_png"], tmp_path, in_process=False, extra=TINY)
    assert result.outcome == "error" and result.message.startswith("error: cannot read"), result


def test_a_huge_png_is_read_at_a_bounded_memory(tmp_path):
    """The 8000x6000 PNG is downscaled as 8-bit: a fresh process's peak stays far below the 1.3 GB of the float
    copies (48 MP x 3 channels x 4 bytes, twice) it used to make. (VmHWM: ru_maxrss keeps the parent's peak across
    exec on Linux.)"""
    path = Path(BY_NAME["huge_png_8000x6000"].make(tmp_path)[0])
    code = ("import sys\nfrom splat4d.load import load_image\n"
            "image = load_image(sys.argv[1], max_side=2048)\nassert image.rgb.shape == (1536, 2048, 3)\n"
            "print(next(int(line.split()[1]) // 1024 for line in open('/proc/self/status') if line.startswith('VmHWM')))")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) < 700


def test_the_judge_catches_what_it_must(tmp_path):
    """The harness's rules fail a traceback, several lines, an error that leaves a result, and a silent exit 1."""
    case = BY_NAME["text_as_png"]
    out = tmp_path / "out"
    out.mkdir()
    assert judge(2, "error: cannot read x\n", out, case)[0] == "error"
    assert judge(2, "[1/6] segment 0.1 s\nerror: cannot read x\n", out, case)[0] == "error"
    assert judge(2, "Traceback (most recent call last):\nerror: cannot read x", out, case)[0].startswith("FAIL")
    assert judge(2, "warning: something\nerror: cannot read x", out, case)[0].startswith("FAIL")
    assert judge(2, "error: something else", out, case)[0].startswith("FAIL")  # does not say 'cannot read'
    assert judge(1, "", out, case)[0].startswith("FAIL")
    (out / "metrics.json").write_text("{}")
    assert judge(2, "error: cannot read x", out, case)[0].startswith("FAIL")
    assert judge(0, "", out, case)[0].startswith("FAIL")  # exit 0 without a scene
