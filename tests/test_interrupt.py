"""Runs that are stopped (issue 14): Ctrl-C or SIGKILL during the fit leaves no corrupt cache entry and the same
command resumes from the finished stages; Ctrl-C says so in one line (exit 130); a second run into the same folder
is refused while the first lives, and a dead run's lock is taken over."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from splat4d.io.ply import read_ply
from splat4d.lock import LOCK_NAME, FolderInUse, RunLock

ROOT = Path(__file__).resolve().parents[1]
COFFEE = ROOT / "splat4d" / "assets" / "coffee.jpg"
BEFORE_FIT = ("segment", "depth", "init", "prior")
# Single-threaded: on a shared machine two threads of a parallel kernel wait for each other's time slices.
ENV = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def command(out: Path, iterations: int = 100) -> list[str]:
    """A run whose fit lasts long enough to be stopped in it (the stages before it take a few seconds): the fast
    preset without the early stop on the input view's loss."""
    import yaml

    from splat4d.config import preset_dir

    preset = yaml.safe_load((preset_dir() / "fast.yaml").read_text())
    preset.setdefault("fit", {})["plateau"] = 0.0
    path = out.parent / "fast_every_step.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(preset))
    return [sys.executable, "-m", "splat4d", "run", str(COFFEE), "--out", str(out), "--preset", str(path),
            "--no-progress", "--load.resolution", "32", "--fit.iterations", str(iterations), "--fit.refine-start",
            "1000", "--video.frames", "2", "--video.size", "32", "--prior.ring-views", "2"]


class Run:
    """A `splat4d run` subprocess whose stderr is collected line by line as it comes."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=ENV,
                                     cwd=ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stderr.readline, "")),
                                        daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 240.0) -> None:
        end = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None or any(text in line for line in self.lines), \
                f"ended ({self.proc.returncode}) before {text!r}: {''.join(self.lines)}"
            assert time.monotonic() < end, f"no {text!r} after {timeout} s: {''.join(self.lines)}"
            time.sleep(0.05)

    def finish(self, timeout: float = 300.0) -> tuple[int, list[str]]:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, [line.rstrip("\n") for line in self.lines if line.strip()]


def cache_state(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "cache").iterdir())}


def assert_finite_scene(out: Path) -> None:
    scene = read_ply(out / "scene.ply")
    values = np.concatenate([v.detach().reshape(len(scene), -1).numpy() for v in scene.params().values()], 1)
    assert len(scene) > 0 and np.isfinite(values).all()
    assert json.loads((out / "metrics.json").read_text())["cached_stages"] == list(BEFORE_FIT)


def stopped_in_the_fit(out: Path, stop: signal.Signals) -> tuple[int, list[str], dict[str, float]]:
    """Start a run and send ``stop`` just after its fit has begun."""
    run = Run(command(out))
    run.wait_for("prior")  # the line after the prior stage: the fit has begun
    time.sleep(0.2)
    assert run.proc.poll() is None, "the fit ended before it could be stopped"
    run.proc.send_signal(stop)
    code, lines = run.finish()
    return code, lines, cache_state(out)


def test_ctrl_c_in_the_fit_says_one_line_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "run"
    code, lines, cache = stopped_in_the_fit(out, signal.SIGINT)
    assert code == 130, lines
    assert lines[-1] == "interrupted; re-run the same command to resume"
    assert not any("Traceback" in line for line in lines)
    # The finished stages are cached whole (key written last), the fit has no entry, nothing looks finished.
    assert {f"{name}.{ext}" for name in BEFORE_FIT for ext in ("pt", "key")} == set(cache)
    assert not any((out / name).exists() for name in ("scene.ply", "metrics.json", LOCK_NAME))
    assert not list(out.rglob(".*.tmp"))
    # The same command resumes: the four stages come from the cache (log and untouched files), the fit runs.
    code, lines = Run(command(out)).finish()
    assert code == 0, lines
    for name in BEFORE_FIT:
        assert any(name in line and "(cached)" in line for line in lines), (name, lines)
    assert {k: v for k, v in cache_state(out).items() if not k.startswith("fit.")} == cache
    assert_finite_scene(out)


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_lives(tmp_path):
    out = tmp_path / "run"
    first = Run(command(out, iterations=100_000))  # lives until stopped
    first.wait_for("[1/6] segment")  # it holds the folder
    res = subprocess.run(command(out), capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "in use by another splat4d run" in lines[0] and f"pid {first.proc.pid}" in lines[0]
    assert first.proc.poll() is None  # the first runs on undisturbed
    first.proc.send_signal(signal.SIGINT)
    code, first_lines = first.finish()
    assert code == 130 and first_lines[-1].startswith("interrupted"), first_lines
    assert not (out / "metrics.json").exists() and not (out / LOCK_NAME).exists()


def test_sigkill_in_the_fit_leaves_a_lock_that_the_next_run_takes_over_and_resumes(tmp_path):
    out = tmp_path / "run"
    code, lines, cache = stopped_in_the_fit(out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    holder = json.loads((out / LOCK_NAME).read_text())  # the killed run could not remove its lock
    (out / "cache" / ".fit.pt.half.tmp").write_bytes(b"a temporary a killed write left")
    code, lines = Run(command(out)).finish()
    assert code == 0, lines
    assert any("taking over the lock" in line and f"pid {holder['pid']}" in line for line in lines), lines
    assert {k: v for k, v in cache_state(out).items() if not k.startswith("fit.")} == cache
    assert not list(out.rglob(".*.tmp")) and not (out / LOCK_NAME).exists()
    assert_finite_scene(out)


def test_lock_in_process_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    messages = []
    with RunLock(tmp_path):
        with pytest.raises(FolderInUse, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).__enter__()
    assert not (tmp_path / LOCK_NAME).exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead_pid, "host": "elsewhere", "started": 0}))
    with RunLock(tmp_path, notify=messages.append):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert len(messages) == 1 and f"pid {dead_pid} on elsewhere" in messages[0]
