"""splat4d.optim.Adam against torch.optim.Adam, and with gsplat's densification editing its state."""

import subprocess
import sys

import torch

from splat4d.optim import Adam


def _run(opt_cls, steps=25, **kw):
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(40, 3))
    b = torch.nn.Parameter(torch.randn(7))
    opt = opt_cls([{"params": [a], "lr": 0.05, "name": "a"}, {"params": [b], "lr": 0.3}], eps=1e-15, **kw)
    target = torch.randn(40, 3)
    for i in range(steps):
        loss = ((a - target) ** 2).sum() + (b**3).sin().sum() * (1 + i % 3)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return a.detach(), b.detach(), opt


def test_adam_matches_torch_bit_for_bit():
    ours_a, ours_b, ours = _run(Adam)
    ref_a, ref_b, ref = _run(torch.optim.Adam, foreach=False)
    assert torch.equal(ours_a, ref_a) and torch.equal(ours_b, ref_b)
    ref_state = list(ref.state.values())
    ours_state = list(ours.state.values())
    for s_ours, s_ref in zip(ours_state, ref_state):
        assert float(s_ours["step"]) == float(s_ref["step"]) == 25
        assert torch.equal(s_ours["exp_avg"], s_ref["exp_avg"])
        assert torch.equal(s_ours["exp_avg_sq"], s_ref["exp_avg_sq"])


def test_gsplat_densification_edits_our_state_like_torchs():
    from gsplat.strategy.ops import duplicate, remove

    results = []
    for cls in (Adam, lambda g, **kw: torch.optim.Adam(g, foreach=False, **kw)):
        torch.manual_seed(1)
        params = torch.nn.ParameterDict({"means": torch.nn.Parameter(torch.randn(10, 3)),
                                         "opacities": torch.nn.Parameter(torch.randn(10))})
        opts = {k: cls([{"params": [params[k]], "lr": 0.01, "name": k}], eps=1e-15) for k in params}
        for step in range(6):
            loss = (params["means"] ** 2).sum() + params["opacities"].sigmoid().sum()
            loss.backward()
            for o in opts.values():
                o.step()
                o.zero_grad(set_to_none=True)
            if step == 2:
                duplicate(params, opts, {}, torch.tensor([True, False] * 5))
            if step == 4:
                remove(params, opts, {}, torch.arange(len(params["means"])) % 4 == 0)
        results.append((params["means"].detach().clone(), opts["means"].state[params["means"]]["exp_avg"].clone()))
    assert results[0][0].shape == (11, 3)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_fit_does_not_import_torch_dynamo():
    code = ("import sys, torch\nfrom splat4d.optim import Adam\n"
            "p = torch.nn.Parameter(torch.ones(3)); o = Adam([p]); p.sum().backward(); o.step(); o.zero_grad()\n"
            "import splat4d.fit\nprint('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr
