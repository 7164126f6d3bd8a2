"""One run per output folder: ``OUT/.splat4d.lock`` holds the running process's pid, host and start time.

The lock is an advisory ``flock`` on that file, which the kernel drops when its process ends however it ends
(Ctrl-C, SIGKILL, a crash), so a second run into the same folder is refused while the first lives, and a lock file
left by a dead run is taken over (with a message naming the run it came from). Where ``flock`` does not exist
(Windows), the pid in the file decides: a live process on this host holds it.

    with RunLock(out):
        ...  # stages, outputs
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".splat4d.lock"


class FolderInUse(RuntimeError):
    """Another splat4d run writes into this output folder."""


def pid_alive(pid: int) -> bool:
    """A process with this pid exists on this machine (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict) -> str:
    started = holder.get("started")
    since = time.strftime(" since %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else ""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{since}"


class RunLock:
    """Hold ``OUT/.splat4d.lock`` for the duration of a ``with`` block; ``FolderInUse`` when a live run holds it.
    ``notify`` gets the one-line message when a stale lock (of a run that is gone) is taken over."""

    def __init__(self, out: Path, notify=None):
        self.path = Path(out) / LOCK_NAME
        self.notify = notify or (lambda msg: print(msg, file=sys.stderr))
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": sys.argv[1:]}
        for _ in range(10):  # a run releasing the lock deletes the file: retry on the new one
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                previous = self._acquire(fd)
            except BaseException:
                os.close(fd)
                raise
            if os.path.exists(self.path) and os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                break
            os.close(fd)  # locked a file another run had just deleted
        else:
            raise FolderInUse(f"could not lock {self.path}: other runs keep replacing it")
        if previous and previous.get("pid") != me["pid"]:
            self.notify(f"taking over the lock of a run that is gone ({_describe(previous)}) in {self.path.parent}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _acquire(self, fd: int) -> dict | None:
        """Lock ``fd``; returns what the file held before (a dead run's pid and host), or raises ``FolderInUse``."""
        previous = _read(fd)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read(fd) or previous or {}
                raise FolderInUse(self._in_use(holder)) from None
            return _read(fd)
        if previous and previous.get("host") == socket.gethostname() and pid_alive(int(previous.get("pid", -1))):
            raise FolderInUse(self._in_use(previous))
        return previous

    def _in_use(self, holder: dict) -> str:
        return (f"{self.path.parent} is in use by another splat4d run ({_describe(holder)}); wait for it to finish "
                f"or give another --out")

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked: a run waiting on this file sees it replaced and retries
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None


def _read(fd: int) -> dict | None:
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return None
