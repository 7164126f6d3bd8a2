"""Adam without ``torch.optim``: the same update, bit for bit, minus a 2-second import.

``torch.optim.Optimizer`` routes its methods through ``torch._disable_dynamo``, whose first call imports
``torch._dynamo`` (about 2 s of CPU here, on every run, for a compiler we never use). This is the single-tensor
update of ``torch.optim.Adam`` (PyTorch 2.x, ``foreach=False``, no AMSGrad, no weight decay), with the attributes
gsplat's densification edits (``param_groups[i]["params"]``, ``state[param]`` holding ``exp_avg``, ``exp_avg_sq``
and ``step``), so ``gsplat.strategy.DefaultStrategy`` works with it unchanged. Tested step by step against
``torch.optim.Adam`` (tests/test_optim.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

import torch
from torch import Tensor


class Adam:
    """Adam (Kingma & Ba 2015) over parameter groups: dicts with ``params`` and optionally ``lr``, ``name``."""

    def __init__(self, groups: Iterable[dict] | Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        groups = list(groups)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = {"lr": lr, "betas": betas, "eps": eps}
        self.param_groups = [{**self.defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[Tensor, dict] = defaultdict(dict)

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                grad = p.grad
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = group["lr"] / (1 - beta1**step)
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**step)).add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-step_size)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_()
                    p.grad.zero_()
