"""The 'shape-prior' depth backend: splat4d's own network (``splat4d.shape``), trained in this repo on procedural
3D objects, predicts from the working image the front surface, the back surface (where each ray last leaves the
object) and the camera's elevation. Offline, on a CPU, weights shipped in the package (hash-checked)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from splat4d.config import DepthConfig
from splat4d.types import DepthMap

_LOADED: dict[str, object] = {}


def shape_prior(path: str | None = None):
    """The network at ``path`` (a weights .pt; default: the packaged one), loaded once per process."""
    from splat4d.shape import load_shape_prior

    key = str(path or "packaged")
    if key not in _LOADED:
        _LOADED[key] = load_shape_prior(path)
    return _LOADED[key]


def packaged_network(path):
    """The packaged network at ``path`` that the depth stage runs beside the default one when its switch is on
    (``SWITCHED_NETWORKS``); its ``ShapePriorUnavailable`` also names the switch that does without it."""
    from splat4d.shape.network import SWITCHED_NETWORKS, ShapePriorUnavailable

    try:
        return shape_prior(str(path))
    except ShapePriorUnavailable as e:
        switch = next(k for k, paths in SWITCHED_NETWORKS.items() if Path(path).name in {q.name for q in paths})
        raise ShapePriorUnavailable(f"{e}; or run without it: `depth: {{{switch}: false}}` in a preset file") from None


class ShapePriorDepth:
    """``DepthEstimator``: metric camera z of the front and the back of the object for splat4d's input camera
    (vertical FoV ``fov_deg`` over the square working image, object centred at ``distance``), plus the elevation.
    ``front``: 'network' takes both surfaces from the network; 'inflation' keeps silhouette inflation's front
    (``splat4d.depth.geometric``, rim on the centre plane) and puts the back the predicted thickness behind it.
    ``ShapePriorUnavailable`` (one line naming ``--depth.backend geometric``) when the weights are missing or
    corrupt. A mask covering the whole frame (``scene_coverage``) is a scene, not an object: it gets geometric's
    ground-plane depth. ``elevation_deg`` (the user's ``--init.elevation-deg``) is given to a network that takes it
    (shape_prior_v2), which then predicts the shape for that view rather than guessing the elevation too.
    ``outside`` (H, W): where the working images lie outside the photo's frame (``Frames.outside``), given to a
    network that reads it (shape_prior_v13): an object cut by the frame goes on there. With the packaged weights
    (no ``--depth.model``) and ``shape_frame_model``, an image whose object meets the frame
    (``splat4d.shape.framing.meets_frame``) is read by shape_prior_v13 (``FRAME_WEIGHTS_PATH``), any other by the
    packaged default (v24; v10 up to session 26): v13 scored below v10 on the quality benchmark's uncut objects (21.02
    against 21.22 dB)
    and 1.24 dB above it with their bottom fifth cut off (docs/benchmarks.md, session 16). With the packaged
    weights, no given elevation and ``shape_steep_model``, shape_prior_v17 (``STEEP_WEIGHTS_PATH``, trained on
    cameras up to 80 degrees above; the data of v10, v13 and v24 stop at 45, and they read a steeper view ever lower)
    reads the elevation first: where it reads ``STEEP_ELEVATION`` degrees or more, and so does shape_prior_v18
    (``CHECK_WEIGHTS_PATH``: it read flat cut-outs seen level as steep half as often), it shapes the object too (it
    reads level objects less well than v10 / v13 / v24 do, so it does nothing below; docs/benchmarks.md, sessions 18-22)."""

    def __init__(self, cfg: DepthConfig, fov_deg: float = 40.0, distance: float = 2.5,
                 elevation_deg: float | None = None, outside: np.ndarray | None = None):
        self.prior = shape_prior(cfg.model)
        self.cfg, self.fov_deg, self.distance, self.elevation_deg = cfg, fov_deg, distance, elevation_deg
        self.outside = outside

    def prior_for(self, mask: np.ndarray):
        """The network that reads this image: the frame-aware one where the object meets the photo's frame."""
        from splat4d.shape.framing import meets_frame
        from splat4d.shape.network import FRAME_WEIGHTS_PATH

        if self.cfg.model is None and self.cfg.shape_frame_model and meets_frame(mask, self.outside):
            return packaged_network(FRAME_WEIGHTS_PATH)
        return self.prior

    def steep_elevation(self, image: np.ndarray, mask: np.ndarray) -> float | None:
        """The elevation the steep model reads (its one pass, hedged over the shape) where it and the second opinion
        (shape_prior_v18, ``CHECK_WEIGHTS_PATH``, whose data has face-on cut-outs that v17 reads as seen from above)
        both read at least ``STEEP_ELEVATION`` degrees, else None (and None whenever the user gave one, chose a
        model, or turned it off). The second opinion is asked only where the steep model reads steep."""
        from splat4d.shape.framing import checked_outside
        from splat4d.shape.network import CHECK_WEIGHTS_PATH, STEEP_ELEVATION, STEEP_WEIGHTS_PATH

        if self.elevation_deg is not None or self.cfg.model is not None or not self.cfg.shape_steep_model:
            return None
        outside = checked_outside(self.outside, mask.shape)

        def one_pass(path) -> float:
            return float(framed_estimate(packaged_network(path), image, mask, self.fov_deg, None, False,
                                         outside)[0].elevation_deg)

        read = one_pass(STEEP_WEIGHTS_PATH)
        if read < STEEP_ELEVATION or one_pass(CHECK_WEIGHTS_PATH) < STEEP_ELEVATION:
            return None
        return read

    def reading(self, image: np.ndarray, mask: np.ndarray) -> tuple[object, float | None]:
        """The network that shapes this image and the elevation it is told (None: it reads its own): the steep
        model, told what it read, where it reads a steep view (:meth:`steep_elevation`), else :meth:`prior_for`'s."""
        from splat4d.shape.network import STEEP_WEIGHTS_PATH

        steep = self.steep_elevation(image, mask)
        if steep is not None:
            return packaged_network(STEEP_WEIGHTS_PATH), steep
        return self.prior_for(mask), self.elevation_deg

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> DepthMap:
        fg = mask > 0.5
        if fg.mean() >= self.cfg.scene_coverage:  # a whole-frame scene, not an object: geometric's ground plane
            from splat4d.depth.geometric import GeometricDepth

            return GeometricDepth(self.cfg, self.fov_deg, self.distance)(image, mask)
        from splat4d.shape.framing import checked_outside

        outside = checked_outside(self.outside, mask.shape)
        prior, elevation = self.reading(image, mask)
        estimate, crop_fov = framed_estimate(prior, image, mask, self.fov_deg, elevation,
                                             self.cfg.shape_two_pass, outside)
        if self.cfg.shape_front == "inflation":
            from splat4d.depth.geometric import GeometricDepth

            z_front = GeometricDepth(self.cfg, self.fov_deg, self.distance, outside)(image, mask).depth.numpy()
            width = 2.0 * self.distance * math.tan(math.radians(crop_fov) / 2)
            z_back = z_front + estimate.thickness * width
        else:
            z_front, z_back = estimate.depths(self.distance, crop_fov)
        return DepthMap.on_mask(z_front, fg, kind="metric", back=np.maximum(z_back, z_front),
                                elevation_deg=float(estimate.elevation_deg))


def framed_estimate(prior, image: np.ndarray, mask: np.ndarray, fov_deg: float, elevation_deg: float | None = None,
                    two_pass: bool | None = None, outside: np.ndarray | None = None):
    """The network's estimate for ``image`` framed as it was trained (``splat4d.segment.centre_and_pad``: the
    object's box centred in a square with a 0.12 margin, over white), mapped back onto ``image``'s pixels, and the
    vertical field of view of that square (its crop units are the square's width at the object). The pipeline's
    working image is framed so already; benchmark views, video frames and multi-view crops need not be.
    ``two_pass``: :class:`splat4d.shape.ShapePrior`'s ``condition_on_estimate`` (None: the prior's own).
    ``outside`` (H, W): where ``image`` lies outside the photo (then so does whatever the square adds beyond
    ``image``); None: all of it inside."""
    from splat4d.segment import centre_and_pad, crop_square
    from splat4d.shape import ShapeEstimate
    from splat4d.shape.procedural import PADDING

    fg = mask > 0.5
    h, w = mask.shape
    framed_input = centre_and_pad(image, mask, PADDING, max(h, w), "given")
    box, side = framed_input.box, framed_input.box[2]
    framed_outside = None
    if outside is not None:
        inside = crop_square(1.0 - np.asarray(outside, np.float32)[..., None], box, max(h, w), 0.0)[..., 0]
        framed_outside = 1.0 - inside
    framed = prior(framed_input.image, framed_input.mask, elevation_deg, two_pass, framed_outside)
    front, thickness = (uncrop(a, box, (h, w)) for a in (framed.front, framed.thickness))
    crop_fov = math.degrees(2 * math.atan(side / h * math.tan(math.radians(fov_deg) / 2)))
    return ShapeEstimate(np.where(fg, front, 0), np.where(fg, thickness, 0), framed.elevation_deg, mask), crop_fov


def uncrop(values: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """``values`` over the square ``box`` = (x0, y0, side, side) of an image of ``shape``, resampled onto the
    image's pixels (0 where the box does not reach)."""
    import cv2

    x0, y0, side, _ = box
    square = cv2.resize(values.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    out = np.zeros(shape, np.float32)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, shape[1]), min(y0 + side, shape[0])
    out[iy0:iy1, ix0:ix1] = square[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    return out
