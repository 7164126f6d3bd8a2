"""nerfstudio method plug-in ``splat4d`` (entry point group ``nerfstudio.method_configs``) and the writer of a
``config.yml`` + checkpoint that nerfstudio's tools load (``ns-viewer --load-config``, ``ns-render``, ``ns-export``).

The method is splatfacto (nerfstudio's Gaussian splatting) reading a splat4d export through the ``splat4d-data``
dataparser: ``ns-train splat4d --data RUN/nerfstudio`` keeps optimising from splat4d's views and points, and
:func:`write_nerfstudio_model` turns a finished splat4d scene into a splatfacto checkpoint in the same world, so
nerfstudio shows exactly splat4d's Gaussians. Needs nerfstudio (optional extra, own environment: see the README).
"""

from __future__ import annotations

from pathlib import Path

import torch
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.splatfacto import SplatfactoModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from splat4d.io.conventions import WORLD_TO_NERFSTUDIO
from splat4d.nerfstudio.checkpoint import CHECKPOINT_DIR, write_splatfacto_checkpoint
from splat4d.nerfstudio.dataparser_spec import splat4d_dataparser_config
from splat4d.transform import transform_scene
from splat4d.types import GaussianScene, num_sh_bases

METHOD_NAME = "splat4d"


def splat4d_trainer_config(iterations: int = 7000, sh_degree: int = 3) -> TrainerConfig:
    """splatfacto's training recipe (learning rates as nerfstudio 1.1) on splat4d's data: white background (splat4d
    views are cut out on white), the splat4d-data dataparser, ``iterations`` steps."""

    def adam(lr: float, final: float | None = None, warmup: int = 0):
        scheduler = None if final is None else ExponentialDecaySchedulerConfig(
            lr_final=final, max_steps=iterations, warmup_steps=warmup, lr_pre_warmup=0)
        return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": scheduler}

    return TrainerConfig(
        method_name=METHOD_NAME,
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=1000,
        max_num_iterations=iterations,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=FullImageDatamanagerConfig(dataparser=splat4d_dataparser_config(), cache_images_type="uint8"),
            model=SplatfactoModelConfig(background_color="white", sh_degree=sh_degree),
        ),
        optimizers={
            "means": adam(1.6e-4, 1.6e-6),
            "features_dc": adam(0.0025),
            "features_rest": adam(0.0025 / 20),
            "opacities": adam(0.05),
            "scales": adam(0.005),
            "quats": adam(0.001),
            "camera_opt": adam(1e-4, 5e-7, warmup=1000),
            "bilateral_grid": adam(2e-3, 1e-4, warmup=1000),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


splat4d_method = MethodSpecification(
    config=splat4d_trainer_config(),
    description="splatfacto continuing from a `splat4d run` export (ns-train splat4d --data RUN/nerfstudio)",
)


def scene_to_nerfstudio_world(scene: GaussianScene, min_sh_degree: int = 1) -> GaussianScene:
    """The scene in nerfstudio's +Z-up world (means, orientations and SH colour rotated), with SH padded by zeros to
    at least ``min_sh_degree`` (splatfacto reads degree-0 colours as sigmoid logits, degree >= 1 as SH)."""
    out = transform_scene(scene.detach().to("cpu"), WORLD_TO_NERFSTUDIO[:3, :3])
    rest = num_sh_bases(max(out.sh_degree, min_sh_degree)) - 1
    if out.shN.shape[1] < rest:
        pad = torch.zeros(len(out), rest - out.shN.shape[1], 3, dtype=out.shN.dtype)
        out = GaussianScene(out.means, out.scales, out.quats, out.opacities, out.sh0, torch.cat([out.shN, pad], 1))
    return out


def write_nerfstudio_model(scene: GaussianScene, dataset_dir: Path, out_dir: Path | None = None,
                           experiment: str | None = None) -> Path:
    """Write ``OUT/EXPERIMENT/splat4d/export/config.yml`` and ``nerfstudio_models/step-000000000.ckpt`` (the
    scene in splatfacto's parameter layout, nerfstudio world) for the nerfstudio dataset ``dataset_dir`` (written by
    ``splat4d export-nerfstudio`` / every run). Returns the config path: ``ns-viewer --load-config PATH``."""
    import yaml

    dataset_dir = Path(dataset_dir).resolve()
    if not (dataset_dir / "transforms.json").is_file():
        raise FileNotFoundError(f"{dataset_dir / 'transforms.json'} not found: write the dataset first "
                                "(splat4d export-nerfstudio RUN_DIR OUT_DIR)")
    ns_scene = scene_to_nerfstudio_world(scene)
    config = splat4d_trainer_config(iterations=30000, sh_degree=ns_scene.sh_degree)
    config.output_dir = Path(out_dir or dataset_dir / "outputs").resolve()
    config.experiment_name = experiment or dataset_dir.name
    config.timestamp = "export"
    config.pipeline.datamanager.data = dataset_dir
    config.pipeline.datamanager.dataparser.data = dataset_dir
    config.relative_model_dir = Path(CHECKPOINT_DIR)  # where write_splatfacto_checkpoint puts it
    write_splatfacto_checkpoint(ns_scene, config.get_base_dir(), step=0)
    config_path = config.get_base_dir() / "config.yml"
    config_path.write_text(yaml.dump(config), "utf8")
    return config_path
