"""Splatfacto-layout checkpoints of a splat4d scene, for nerfstudio's viewer (``ns-viewer --load-config``).

The checkpoint file needs only torch: ``nerfstudio_models/step-XXXXXXXXX.ckpt`` holding ``{"step", "pipeline"}``
with splatfacto's parameter names. The ``config.yml`` next to it is a YAML dump of a nerfstudio ``TrainerConfig``,
so writing it needs nerfstudio installed (in its own environment: it pins gsplat 1.4.0 / viser 0.2.7).
"""

from __future__ import annotations

from pathlib import Path

import torch

from splat4d.types import GaussianScene

PREFIX = "_model.gauss_params."
CHECKPOINT_DIR = "nerfstudio_models"
"""Folder of the checkpoints next to config.yml (nerfstudio's default ``relative_model_dir``)."""


def splatfacto_state_dict(scene: GaussianScene) -> dict[str, torch.Tensor]:
    """Our parameters under splatfacto's names and shapes (features_dc (N,3), features_rest (N,K,3),
    opacities (N,1); scales log, quats wxyz, opacities logit, as in splat4d). Positions are kept in splat4d's
    world: pair the checkpoint with the dataset written by ``export_nerfstudio``'s cameras, or convert with
    ``splat4d.io.conventions`` first."""
    s = scene.detach().to("cpu")
    return {
        PREFIX + "means": s.means.float().clone(),
        PREFIX + "scales": s.scales.float().clone(),
        PREFIX + "quats": s.quats.float().clone(),
        PREFIX + "features_dc": s.sh0[:, 0, :].float().clone(),
        PREFIX + "features_rest": s.shN.float().clone(),
        PREFIX + "opacities": s.opacities[:, None].float().clone(),
    }


def scene_from_splatfacto_state(state: dict[str, torch.Tensor]) -> GaussianScene:
    get = lambda k: state[PREFIX + k]  # noqa: E731
    return GaussianScene(means=get("means"), scales=get("scales"), quats=get("quats"),
                         opacities=get("opacities")[:, 0], sh0=get("features_dc")[:, None, :],
                         shN=get("features_rest")).validate()


def write_splatfacto_checkpoint(scene: GaussianScene, out_dir: Path, step: int = 0) -> Path:
    out = Path(out_dir) / CHECKPOINT_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"step-{step:09d}.ckpt"
    torch.save({"step": step, "pipeline": splatfacto_state_dict(scene)}, path)
    return path
