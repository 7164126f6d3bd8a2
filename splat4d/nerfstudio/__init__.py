"""nerfstudio integration through its file formats (dataset export, splatfacto checkpoints) and entry points.

nerfstudio itself is optional (``pip install splat4d[nerfstudio]`` in its own environment: it pins gsplat 1.4.0 and
viser 0.2.7 and needs torchvision); nothing here imports it at module level.
"""
