"""The runner: keys derived from what stages declare, undeclared reads refused, cache entries never half-written."""

from dataclasses import replace

import pytest
import torch

from splat4d.config import FitConfig, InitConfig, PriorConfig, RunConfig, VideoConfig
from splat4d.pipeline import RECIPES, image_stages, motion_stages
from splat4d.runner import Stage, StageCache, UndeclaredSetting, plan_keys, run_stages

CPU = torch.device("cpu")


def keys(cfg: RunConfig, stages=None, device=CPU, source="s") -> dict:
    return plan_keys(stages or image_stages(), cfg, source, device)


def test_a_setting_changes_the_key_of_the_stages_that_read_it_and_of_those_after_them():
    base = keys(RunConfig())
    cases = {  # setting changed -> first stage whose key must change
        "fit": (replace(RunConfig(), fit=FitConfig(iterations=7)), "fit"),
        "prior": (replace(RunConfig(), prior=PriorConfig(ring_views=3)), "prior"),
        "init.fov_deg": (replace(RunConfig(), init=InitConfig(fov_deg=50.0)), "fov"),
        "init.back_blur": (replace(RunConfig(), init=InitConfig(back_blur=0.1)), "init"),
        "seed": (replace(RunConfig(), seed=3), "prior"),
    }
    order = [s.name for s in image_stages()]
    for what, (cfg, first) in cases.items():
        changed = keys(cfg)
        for name in order:
            expect_change = order.index(name) >= order.index(first)
            assert (changed[name] != base[name]) == expect_change, (what, name)


def test_settings_no_stage_reads_change_no_key():
    base = keys(RunConfig())
    same = keys(replace(RunConfig(), video=VideoConfig(frames=3), progress=False, resume=False, port=1234))
    assert same == base


def test_the_device_is_in_the_keys_of_the_stages_that_declare_it():
    cpu, cuda = keys(RunConfig()), keys(RunConfig(), device=torch.device("cuda"))
    assert cpu["segment"] == cuda["segment"] and cpu["init"] != cuda["init"]  # init follows depth
    assert cpu["depth"] != cuda["depth"]
    declared = {s.name for s in image_stages() if s.device}
    assert declared == {"depth", "prior", "fit"}


def test_the_input_files_are_in_every_key():
    a, b = keys(RunConfig(), source="a"), keys(RunConfig(), source="b")
    assert all(a[name] != b[name] for name in a)


def test_every_recipe_declares_its_inputs_in_order():
    for mode, recipe in RECIPES.items():
        stages = recipe()
        names = [s.name for s in stages]
        assert len(set(names)) == len(names), mode
        for i, stage in enumerate(stages):
            assert set(stage.inputs) <= set(names[:i]), (mode, stage.name)
    assert [s.name for s in motion_stages()][-1] == "motion"


def test_a_stage_reading_an_undeclared_setting_fails_loudly(tmp_path):
    sneaky = Stage("sneaky", lambda ctx: ctx.cfg.fit.iterations, reads=("fit.lr_means",))
    with pytest.raises(UndeclaredSetting, match="iterations"):
        run_stages([sneaky], RunConfig(), source_key="s", device=CPU, quiet=True)
    device_user = Stage("dev", lambda ctx: ctx.device)
    with pytest.raises(UndeclaredSetting, match="device"):
        run_stages([device_user], RunConfig(), source_key="s", device=CPU, quiet=True)
    honest = Stage("honest", lambda ctx: (ctx.cfg.fit.iterations, ctx.cfg.seed), reads=("fit.iterations", "seed"))
    assert run_stages([honest], RunConfig(), source_key="s", device=CPU, quiet=True).values["honest"] == (
        RunConfig().fit.iterations, 0)


def test_cache_hits_only_on_the_same_key_and_an_interrupted_write_leaves_no_entry(tmp_path):
    calls = []

    def compute(ctx):
        calls.append(ctx.cfg.fit.iterations)
        return {"value": ctx.cfg.fit.iterations}

    stage = Stage("s", compute, reads=("fit.iterations",))
    cache = StageCache(tmp_path)
    for iterations in (5, 5, 6, 5):
        cfg = replace(RunConfig(), fit=FitConfig(iterations=iterations))
        out = run_stages([stage], cfg, source_key="k", device=CPU, cache=cache, quiet=True)
        assert out.values["s"] == {"value": iterations}
    assert calls == [5, 6, 5]  # the third run of 5 finds the entry of 6: a new key, recomputed

    class Interrupted(Exception):
        pass

    def interrupted(ctx):
        raise Interrupted

    cfg7 = replace(RunConfig(), fit=FitConfig(iterations=7))
    real_save = torch.save

    def failing_save(obj, f):
        real_save(obj, f)
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing the entry

    torch.save = failing_save
    try:
        with pytest.raises(KeyboardInterrupt):
            run_stages([stage], cfg7, source_key="k", device=CPU, cache=cache, quiet=True)
    finally:
        torch.save = real_save
    assert not list((tmp_path / "cache").glob(".*tmp"))  # no temporary left behind
    out = run_stages([stage], cfg7, source_key="k", device=CPU, cache=cache, quiet=True)
    assert out.cached == [] and calls[-1] == 7  # recomputed, not a half-written hit
    assert run_stages([Stage("s", interrupted, reads=("fit.iterations",))], cfg7, source_key="k", device=CPU,
                      cache=cache, quiet=True).cached == ["s"]


def test_stages_reading_the_seed_start_from_it_whether_or_not_earlier_stages_were_cached(tmp_path):
    draw = Stage("draw", lambda ctx: torch.rand(3), reads=("seed",))
    noisy = Stage("noisy", lambda ctx: torch.rand(5))  # consumes random numbers before "draw" when it runs
    cache = StageCache(tmp_path)
    fresh = run_stages([noisy, draw], RunConfig(), source_key="k", device=CPU, cache=cache, quiet=True)
    (tmp_path / "cache" / "draw.key").unlink()
    resumed = run_stages([noisy, draw], RunConfig(), source_key="k", device=CPU, cache=cache, quiet=True)
    assert resumed.cached == ["noisy"] and torch.equal(fresh.values["draw"], resumed.values["draw"])


def test_new_shape_prior_weights_re_run_the_depth_stage(tmp_path):
    """The depth stage's key holds the hash of the weights the 'shape-prior' backend loads: retrained weights under
    the same path must not come back from the cache."""
    from splat4d.config import DepthConfig
    from splat4d.shape.network import ShapeUNet, save_packaged

    path = tmp_path / "w.pt"
    cfg = replace(RunConfig(), depth=DepthConfig(backend="shape-prior", model=str(path)))
    torch.manual_seed(0)
    save_packaged(ShapeUNet(widths=(4, 8)), path)
    first = keys(cfg)
    save_packaged(ShapeUNet(widths=(4, 8)), path)  # other random weights, same file
    second = keys(cfg)
    assert first["segment"] == second["segment"] and first["depth"] != second["depth"]
    assert first["fit"] != second["fit"]
    assert keys(RunConfig())["depth"] == keys(RunConfig())["depth"]  # geometric: nothing to hash
