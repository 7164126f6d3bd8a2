"""A learned single-image shape prior (front relief, thickness, camera elevation) trained on procedural objects.

``splat4d.shape.procedural`` makes the training data (analytic ray casting), ``splat4d.shape.network`` holds the
U-Net and the :func:`~splat4d.shape.network.load_shape_prior` entry point; ``tools/train_shape_prior.py`` trains it.
"""

from splat4d.shape.network import ShapeEstimate, ShapePrior, ShapePriorUnavailable, load_shape_prior

__all__ = ["ShapeEstimate", "ShapePrior", "ShapePriorUnavailable", "load_shape_prior"]
