"""Interactive browser viewer: a viser server showing a splat scene (``splat4d view scene.ply``).

viser draws Gaussians from world-space covariances, DC colours and activated opacities; its client camera pose is an
OpenCV-style camera-to-world (wxyz, position), the same convention as splat4d's, so no conversion is needed. The
world up direction is set to -y (splat4d and COLMAP worlds are y-down).
"""

from __future__ import annotations

import numpy as np
import torch

from splat4d.types import GaussianScene


def viser_arrays(scene: GaussianScene) -> dict[str, np.ndarray]:
    """centers (N,3), covariances (N,3,3) in world space, rgbs (N,3) in [0,1], opacities (N,1) activated."""
    from splat4d.render.projection import covariances

    with torch.no_grad():
        s = scene.detach().to("cpu")
        return {
            "centers": s.means.float().numpy(),
            "covariances": covariances(s).float().numpy(),
            "rgbs": s.rgb_dc().float().numpy(),
            "opacities": s.opacities_act().float().numpy()[:, None],
        }


def rotation_to_wxyz(R: np.ndarray) -> np.ndarray:
    from splat4d.transform import rotmat_to_quat

    return rotmat_to_quat(torch.as_tensor(R, dtype=torch.float64)).numpy()


def start_viewer(scene: GaussianScene, host: str = "127.0.0.1", port: int = 8080, *, initial_c2w=None,
                 fov_deg: float = 40.0, verbose: bool = False):
    """Start a viser server showing ``scene``; returns it (it serves from background threads until ``stop()``).

    ``initial_c2w`` (4x4 OpenCV camera-to-world) is applied to every client that connects.
    """
    import viser

    server = viser.ViserServer(host=host, port=port, verbose=verbose)
    server.scene.set_up_direction((0.0, -1.0, 0.0))
    server.scene.add_gaussian_splats("/splats", **viser_arrays(scene))
    if initial_c2w is not None:
        c2w = np.asarray(initial_c2w, dtype=np.float64)
        wxyz, position = rotation_to_wxyz(c2w[:3, :3]), c2w[:3, 3]

        @server.on_client_connect
        def _(client) -> None:
            with client.atomic():
                client.camera.fov = float(np.radians(fov_deg))
                client.camera.wxyz = wxyz
                client.camera.position = position

    return server


def initial_camera(scene: GaussianScene, fov_deg: float = 40.0, elevation_deg: float = 15.0) -> np.ndarray:
    """The first frame of the default orbit around the scene (front view, slightly above)."""
    from splat4d import paths

    center, distance = paths.frame_scene(scene.means, scene.opacities_act(), fov_deg)
    path = paths.orbit(center=center, radius=distance, elevation_deg=elevation_deg, frames=1, fov_y_deg=fov_deg)
    return path.cameras.c2w[0].numpy()
