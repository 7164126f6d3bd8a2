"""The runner every mode goes through. A mode is a recipe: a list of :class:`Stage` declarations, each naming what it
reads -- settings (dotted config paths), the device, the seed, the outputs of earlier stages -- and the runner does
the rest: it derives each stage's cache key from exactly those declarations (so no key is chained by hand and none
can go stale), hands the stage a view of the configuration that refuses any setting it did not declare, seeds it,
times it, caches its output in ``OUT/cache/`` and logs one line.

    stages = [Stage("segment", load, reads=("input", "load", "segment")),
              Stage("depth", estimate, reads=("depth",), inputs=("segment",), device=True), ...]
    outcome = run_stages(stages, cfg, source_key=hash_of_the_input_files, device=torch.device("cpu"),
                         cache=StageCache(out))
    outcome.values["depth"], outcome.keys["depth"], outcome.timings, outcome.cached
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from splat4d.config import to_dict

CACHE_VERSION = 2


class UndeclaredSetting(AttributeError):
    """A stage read a setting (or the device) it did not declare: its cache key would not follow that setting."""


@dataclass(frozen=True)
class Stage:
    """One step of a mode. ``compute(ctx, **inputs)`` gets a :class:`StageContext` and, by name, the outputs of the
    stages listed in ``inputs``; it returns this stage's output (cached unless ``cached`` is False)."""

    name: str
    compute: Callable[..., Any]
    reads: tuple[str, ...] = ()
    """Settings the stage reads, as dotted paths of the run configuration: a whole section ("depth"), one field
    ("init.fov_deg") or a top-level field ("seed"). The key holds their values; ``ctx.cfg`` exposes only them."""
    inputs: tuple[str, ...] = ()
    """Earlier stages whose outputs the stage takes (their keys join its key)."""
    device: bool = False
    """The output depends on the device (fp16 on CUDA, fp32 on CPU, another rasterizer): the key holds it."""
    cached: bool = True
    """Store the output in the cache (cheap stages are recomputed; their key still chains)."""
    resources: Callable[[Any], Any] | None = None
    """What else the output depends on, looked up from the settings: e.g. the hash of the weights file a backend
    loads, so new weights re-run the stage. Its value joins the key."""


def _tree(reads: tuple[str, ...]) -> dict:
    tree: dict = {}
    for path in reads:
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if node is True:
                break
        else:
            node[leaf] = True
    return tree


class SettingsView:
    """Read-only view of a config dataclass that exposes the declared fields only (whole sections as they are)."""

    def __init__(self, obj: Any, tree: dict, where: str):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_where", where)

    def __getattr__(self, name: str) -> Any:
        declared = self._tree.get(name)
        if declared is True:
            return getattr(self._obj, name)
        if isinstance(declared, dict):
            return SettingsView(getattr(self._obj, name), declared, f"{self._where}.{name}")
        raise UndeclaredSetting(f"{self._where} reads '{name}' without declaring it in its Stage(reads=...)")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("stage settings are read-only")


@dataclass
class StageContext:
    """What a stage's ``compute`` gets besides its inputs."""

    cfg: Any
    """The run configuration, restricted to the settings the stage declared."""
    stage: str
    progress: bool = True
    """Show progress bars (never part of a key)."""
    declared_device: torch.device | None = None

    @property
    def device(self) -> torch.device:
        if self.declared_device is None:
            raise UndeclaredSetting(f"stage {self.stage!r} uses the device without declaring it (Stage(device=True))")
        return self.declared_device

    @property
    def backend(self) -> str:
        """The rasterizer for the device: gsplat on CUDA, splat4d's own on CPU."""
        from splat4d.render import backend_for

        return backend_for(self.device)


def setting(cfg: Any, path: str) -> Any:
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def stage_key(stage: Stage, cfg: Any, source_key: str, device: torch.device, input_keys: dict[str, str]) -> str:
    """The cache key of ``stage``: a hash of its name, the input files, its declared settings' values, the device
    when declared, and its input stages' keys."""
    parts = {"version": CACHE_VERSION, "stage": stage.name, "source": source_key,
             "settings": {path: to_dict(setting(cfg, path)) for path in sorted(stage.reads)},
             "device": device.type if stage.device else None,
             "resources": to_dict(stage.resources(cfg)) if stage.resources else None,
             "inputs": {name: input_keys[name] for name in stage.inputs}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_keys(stages: list[Stage], cfg: Any, source_key: str, device: torch.device,
              given_keys: dict[str, str] | None = None) -> dict[str, str]:
    """Every stage's key, without running anything (keys depend on declarations only)."""
    keys = dict(given_keys or {})
    for stage in stages:
        if stage.name not in keys:
            missing = [name for name in stage.inputs if name not in keys]
            if missing:
                raise ValueError(f"stage {stage.name!r} takes {missing} from no earlier stage")
            keys[stage.name] = stage_key(stage, cfg, source_key, device, keys)
    return keys


class StageCache:
    """``OUT/cache/NAME.pt`` plus ``NAME.key``; ``get`` returns the stored object only when the key matches. Both
    files are written atomically, the key last, so an interrupted write never leaves an entry that matches."""

    def __init__(self, out: Path, enabled: bool = True):
        self.root = Path(out) / "cache"
        self.enabled = enabled

    def get(self, name: str, key: str) -> Any:
        data, key_file = self.root / f"{name}.pt", self.root / f"{name}.key"
        if not (self.enabled and data.is_file() and key_file.is_file() and key_file.read_text() == key):
            return None
        try:
            return torch.load(data, weights_only=False)
        except Exception:  # noqa: BLE001 - a corrupt cache entry is recomputed
            return None

    def put(self, name: str, key: str, value: Any) -> None:
        from splat4d.io.ply import atomic_write_bytes

        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"{name}.key").unlink(missing_ok=True)
        atomic_write_bytes(self.root / f"{name}.pt", lambda f: torch.save(value, f))
        atomic_write_bytes(self.root / f"{name}.key", lambda f: f.write(key.encode()))


@dataclass
class Outcome:
    values: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)


def log(msg: str, quiet: bool = False) -> None:
    """Progress lines go to stderr, through tqdm so they do not break a running bar."""
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(msg, file=sys.stderr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_stages(stages: list[Stage], cfg: Any, *, source_key: str, device: torch.device,
               cache: StageCache | None = None, progress: bool = True, quiet: bool = False,
               given: dict[str, tuple[Any, str]] | None = None) -> Outcome:
    """Run ``stages`` in order. ``given``: outputs (with their keys) of stages computed elsewhere, which are skipped.
    A stage that reads ``seed`` runs after seeding Python, numpy and torch with it, so a resumed run computes what a
    fresh one does."""
    given = given or {}
    outcome = Outcome(keys=plan_keys(stages, cfg, source_key, device, {n: k for n, (_, k) in given.items()}))
    outcome.values.update({name: value for name, (value, _) in given.items()})
    todo = [s for s in stages if s.name not in given]
    for index, stage in enumerate(todo, 1):
        key = outcome.keys[stage.name]
        t0 = time.perf_counter()
        value = cache.get(stage.name, key) if (cache is not None and stage.cached) else None
        if value is None:
            ctx = StageContext(SettingsView(cfg, _tree(stage.reads), f"stage {stage.name!r}"), stage.name, progress,
                               device if stage.device else None)
            if "seed" in stage.reads:
                seed_everything(int(cfg.seed))
            value = stage.compute(ctx, **{name: outcome.values[name] for name in stage.inputs})
            if cache is not None and stage.cached:
                cache.put(stage.name, key, value)
        elif stage.cached:
            outcome.cached.append(stage.name)
        outcome.values[stage.name] = value
        outcome.timings[stage.name] = round(time.perf_counter() - t0, 3)
        note = "  (cached)" if stage.name in outcome.cached else ""
        log(f"[{index}/{len(todo)}] {stage.name:<8} {outcome.timings[stage.name]:7.2f} s{note}", quiet)
    return outcome


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_hash(*paths: Path | None) -> str:
    """Hash of the input files (a folder: the names and contents of its files, in order); ``None`` entries count."""
    h = hashlib.sha256()
    for path in paths:
        if path is None:
            h.update(b"-")
        elif Path(path).is_dir():
            for p in sorted(Path(path).iterdir()):
                if p.is_file():
                    h.update(p.name.encode())
                    h.update(file_hash(p).encode())
        else:
            h.update(file_hash(Path(path)).encode())
    return h.hexdigest()
