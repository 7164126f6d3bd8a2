"""nerfstudio dataparser plug-in ``splat4d-data`` (entry point group ``nerfstudio.dataparser_configs``).

It is nerfstudio's own dataparser set up for a ``splat4d run`` export: the cameras and points are already in a
+Z-up world around the object, so nothing is re-oriented, re-centred or re-scaled (the Gaussians of a splat4d
checkpoint stay aligned with the cameras), and every view is used for training (a single-image run has a handful of
views; nerfstudio's default split would leave none for evaluation).

This module imports only nerfstudio's dataparser modules: nerfstudio discovers dataparsers while its method
registry is being imported, so importing ``splat4d.nerfstudio.method`` from here would be circular.
Needs nerfstudio (optional extra ``splat4d[nerfstudio]``, in its own environment: see the README).
"""

from __future__ import annotations

from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.plugins.registry_dataparser import DataParserSpecification


def splat4d_dataparser_config(**overrides) -> NerfstudioDataParserConfig:
    """nerfstudio's dataparser with splat4d's world kept as is (no orientation/centre/scale changes)."""
    settings = dict(orientation_method="none", center_method="none", auto_scale_poses=False, scale_factor=1.0,
                    load_3D_points=True, eval_mode="all")
    settings.update(overrides)
    return NerfstudioDataParserConfig(**settings)


splat4d_dataparser = DataParserSpecification(
    config=splat4d_dataparser_config(),
    description="a `splat4d run` export (views + transforms.json + sparse_pc.ply), world kept as splat4d wrote it",
)
