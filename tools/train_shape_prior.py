"""Train the single-image shape prior (issue #12) on procedural objects, on one CPU core.

    python tools/train_shape_prior.py                       # generate missing data, train / resume, export
    python tools/train_shape_prior.py --steps 3400 --deadline-utc 20:35
    python tools/train_shape_prior.py --export              # package the latest checkpoint's weights now
    python tools/train_shape_prior.py --generate-only --train-shards 60

A v11 from v10's weights (55 minutes, 3,338 steps, Adam 2e-4, v10's loss) on 40 shards from seed shard 800 of
v10's recipe plus the two newest data options (``--faceon-wide 0.5 --attached 0.15``) scored below v10 on the quality
benchmark (20.65 against 20.97 dB) and was not shipped (docs/benchmarks.md, session 12).

A v12 from v10's weights (85 minutes, 2,838 steps on one core, Adam 1.5e-4, v10's loss, ``--ema 0.998``) on 48 new
shards from seed shard 900 of v10's recipe, made beside it, scored below v10 too (20.79 against 20.95 dB; validation
thickness MAE 0.0707 against 0.0712) and was not shipped (docs/benchmarks.md, session 14).

A v19 and a v20 from v10's weights (60 minutes each on one core, side by side, Adam 1e-4, v10's loss but the
thickness's pinball loss of the 0.65 / 0.8 quantile, ``--thickness-quantile``) on 48 new shards from seed shard 1300
of v10's recipe failed their rule (the face-on torus and plate thickened with the box; docs/benchmarks.md, session
24) and were not shipped.

A v21 and a v22 from v10's weights (60 minutes each on one core, side by side, Adam 1e-4, v10's loss) with two / three
thickness maps and a choice between them (``--hypotheses 2`` / ``3``, multiple-choice learning) on the same shards
failed their rule too: the maps parted into a thinner and a thicker version of every object, and the choice learned
only their base rate (docs/benchmarks.md, session 25); not shipped.
A v23 from v10's weights (40 minutes, 2,803 steps on one core, Adam 1e-4, v10's loss) on those 48 shards plus 10 of
face-on samples only, half of them turned exactly face-on and unsquashed, made beside it, failed its rule as well (the
box 0.74 -> 0.81 of its thickness, the elevation reads higher; docs/benchmarks.md, session 25):

    O="--version shape_prior_v23 --out runs/shape_prior_v23 --first-seed-shard 1300"  # data/: session 24's shards
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 58 --level 0.5 --faceon 1.0 \
        --faceon-boxes 0.6 --faceon-wide 0.5 --faceon-square 0.5 $O &
    taskset -c 0 python tools/train_shape_prior.py --train-alongside --train-shards 58 $O \
        --init-from splat4d/shape/weights/shape_prior_v10.pt --budget-minutes 40 --lr 1e-4 --warmup 50 \
        --front-weight 2 --grad-scales 4

shape_prior_v24 (the packaged default since session 26: the six 21.50 dB / IoU 0.865 against v10's 21.22 / 0.846;
docs/benchmarks.md, session 26) continues from v10's weights with v10's loss, 3,942 steps in 60 minutes on one core,
Adam 1e-4, on 48 new shards of v10's recipe in which half the near-level cameras are exactly level
(``--level-exact 0.5``), made beside it (the validation shard is v19's, v7's recipe, linked into data/). A v25, the
same with 10 more shards of level face-on samples (train_0048-0057), passed the same rule with a lower IoU (0.861):

    O="--version shape_prior_v24 --out runs/shape_prior_v24 --first-seed-shard 1400"  # data/val_0000.*: v19's
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 48 --level 0.5 --faceon 0.15 \
        --faceon-boxes 0.6 --saucers 0.15 --level-exact 0.5 $O &
    taskset -c 0 python tools/train_shape_prior.py --train-alongside --train-shards 48 $O \
        --init-from splat4d/shape/weights/shape_prior_v10.pt --budget-minutes 60 --lr 1e-4 --warmup 50 \
        --front-weight 2 --grad-scales 4 --weights runs/shape_prior_v24/shape_prior_v24.pt
    # v25 (its own out/, data/ linked to v24's shards, with 10 more made after v24's 48):
    python tools/train_shape_prior.py --generate-only --train-shards 58 --level 1.0 --level-exact 0.5 \
        --faceon 1.0 --faceon-boxes 0.6 --faceon-wide 0.5 --faceon-square 0.5 $O

(``--train-alongside`` trains on every finished shard in data/, not only the first ``--train-shards``: shards made
for another run must not be finished in the same folder while it trains.)

A v14 and a v15 (session 17, not shipped: they read a face-on plate cut off by the frame as a saucer seen from 43
degrees above; docs/benchmarks.md, session 17) continue from v13's weights on 56 shards of v13's recipe with 15% of
the samples seen from 45-80 degrees and 24 with all of them so (``--steep``), v14 3,300 steps in 54 minutes, v15
from v14's weights 1,700 more in 27 at half the rate:

    O="--version shape_prior_v14 --out runs/shape_prior_v14 --first-seed-shard 1100"
    R="--level 0.5 --faceon 0.15 --faceon-boxes 0.6 --saucers 0.15"
    python tools/train_shape_prior.py --generate-only --train-shards 0 $O
    python tools/train_shape_prior.py --generate-only --train-shards 56 $R --steep 0.15 --workers 2 $O
    python tools/train_shape_prior.py --generate-only --train-shards 80 $R --steep 1.0 --workers 2 $O
    python tools/train_shape_prior.py --train-shards 80 --in-channels 10 --truncate 0.3 \
        --init-from splat4d/shape/weights/shape_prior_v13.pt --steps 3300 --lr 2e-4 --warmup 50 \
        --front-weight 2 --grad-scales 4 $O
    # v15: runs/shape_prior_v15 with runs/shape_prior_v14/data linked as its data/
    python tools/train_shape_prior.py --version shape_prior_v15 --out runs/shape_prior_v15 --first-seed-shard 1100 \
        --train-shards 80 --in-channels 10 --truncate 0.3 --init-from splat4d/shape/weights/shape_prior_v14.pt \
        --steps 1700 --lr 1e-4 --warmup 20 --front-weight 2 --grad-scales 4

shape_prior_v17 (shipped beside v10 and v13: ``splat4d run`` reads every photo's elevation with it first and lets it
shape the photos it reads at 40 degrees or more; docs/benchmarks.md, session 18) continues v15's data with 24 shards
in which every sample is face-on, so that face-on discs cut by the frame are not read as saucers seen from above:
v16 from v15's weights (not shipped: 0.3 degrees short of its gate), v17 from v16's at half the rate, 1,700 steps
(26 minutes on one core) each (v15's and v16's weights are their exports, not in the package):

    python tools/train_shape_prior.py --generate-only --train-shards 104 --level 0.5 --faceon 1.0 --faceon-boxes 0.6 \
        --workers 2 $O   # 24 face-on shards beside session 17's 80; runs/shape_prior_v16 and _v17 link that data/
    python tools/train_shape_prior.py --version shape_prior_v16 --out runs/shape_prior_v16 --first-seed-shard 1100 \
        --train-shards 104 --in-channels 10 --truncate 0.3 --init-from splat4d/shape/weights/shape_prior_v15.pt \
        --steps 1700 --lr 1e-4 --warmup 20 --front-weight 2 --grad-scales 4
    python tools/train_shape_prior.py --version shape_prior_v17 --out runs/shape_prior_v17 --first-seed-shard 1100 \
        --train-shards 104 --in-channels 10 --truncate 0.3 --init-from splat4d/shape/weights/shape_prior_v16.pt \
        --steps 1700 --lr 5e-5 --warmup 20 --front-weight 2 --grad-scales 4

shape_prior_v18 (shipped as the steep model's second opinion: v17 takes over only where v18 reads 40 degrees or more
too; it failed as the steep model itself; docs/benchmarks.md, sessions 19-22) continues from v17's weights on v17's
104 shards and 12 in which every sample is face-on and 70% of those are thin cut-outs (seeds from shard 1204),
1,700 steps (25 minutes on one core) at v17's rate (the plan's options, as docs/benchmarks.md session 19 fixed them):

    python tools/train_shape_prior.py --generate-only --train-shards 116 --level 0.5 --faceon 1.0 --faceon-boxes 0.6 \
        --faceon-cutouts 0.7 --flat 0.5 --workers 2 $O   # runs/shape_prior_v18 links v17's data/
    python tools/train_shape_prior.py --version shape_prior_v18 --out runs/shape_prior_v18 --first-seed-shard 1100 \
        --train-shards 116 --in-channels 10 --truncate 0.3 --init-from splat4d/shape/weights/shape_prior_v17.pt \
        --steps 1700 --lr 5e-5 --warmup 20 --front-weight 2 --grad-scales 4

shape_prior_v13 (shipped beside v10: ``splat4d run`` reads a photo whose object meets the frame with it) continues
from v10's weights with v10's loss and one more input plane (where the working image lies outside the photo, zero
weight at the start, so it starts as v10), 4,501 steps in 80 minutes on one core, Adam 2e-4, on 48 new shards (seeds
from shard 1000) of v10's recipe made beside it, 30% of the samples cut by a random frame edge as they are drawn
(``--truncate 0.3``, ``splat4d.shape.framing``). Alone it scored below v10 on the uncut benchmark (21.02 against
21.22 dB) and 1.24 dB above it with the objects' bottom fifth cut off (docs/benchmarks.md, session 16):

    O="--version shape_prior_v13 --out runs/shape_prior_v13 --first-seed-shard 1000"
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 0 $O
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 48 --level 0.5 --faceon 0.15 \
        --faceon-boxes 0.6 --saucers 0.15 $O &
    taskset -c 0 python tools/train_shape_prior.py --train-alongside $O --in-channels 10 --truncate 0.3 \
        --init-from splat4d/shape/weights/shape_prior_v10.pt --steps 6000 --budget-minutes 80 --lr 2e-4 \
        --warmup 50 --front-weight 2 --grad-scales 4

shape_prior_v10 (the packaged default, and so ``splat4d run``'s depth for a photo of an object) continues from
v9's weights with the same loss, 6,000 steps (48 minutes) on one core, Adam 2e-4, on 48 new shards (seeds from shard
700) of v9's last recipe with fewer saucers, made beside it (the validation shard first, with v7's recipe):

    O="--version shape_prior_v10 --out runs/shape_prior_v10 --first-seed-shard 700"
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 0 $O
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 48 --level 0.5 --faceon 0.15 \
        --faceon-boxes 0.6 --saucers 0.15 $O &
    taskset -c 0 python tools/train_shape_prior.py --train-alongside $O \
        --init-from splat4d/shape/weights/shape_prior_v9.pt --steps 6000 --budget-minutes 58 --lr 2e-4 --warmup 50 \
        --front-weight 2 --grad-scales 4

shape_prior_v9 continues from v8's weights with v8's loss, 6,000 steps (52 minutes) on one core, on 60 new shards
(seeds from shard 600): the first of v7's recipe, 59 with more level cameras and face-on boxes (``--level 0.5
--faceon 0.15 --faceon-boxes 0.6``), then 24 more with cups on saucers too (``--saucers 0.3``), made beside it on
the other core and picked up as they came:

    O="--version shape_prior_v9 --out runs/shape_prior_v9 --first-seed-shard 600"
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 1 $O
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 60 --level 0.5 --faceon 0.15 \
        --faceon-boxes 0.6 $O &
    taskset -c 0 python tools/train_shape_prior.py --train-alongside $O \
        --init-from splat4d/shape/weights/shape_prior_v8.pt --steps 6000 --budget-minutes 68 --lr 3e-4 --warmup 50 \
        --front-weight 2 --grad-scales 4
    # once the first 60 are done:
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 84 --level 0.5 --faceon 0.15 \
        --faceon-boxes 0.6 --saucers 0.3 $O

shape_prior_v8 continues from v7's weights, 71 minutes (7,000 steps) on one core, with the front
weighed twice and gradient matching at 4 scales, on 48 new shards of v7's recipe (seeds from shard 500) and 24 more
with face-on boxes (``--faceon 0.15 --faceon-boxes 0.5``), made beside it on the other core:

    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 48 --first-seed-shard 500 \
        --version shape_prior_v8 --out runs/shape_prior_v8
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 72 --first-seed-shard 500 \
        --faceon 0.15 --faceon-boxes 0.5 --version shape_prior_v8 --out runs/shape_prior_v8 &
    taskset -c 0 python tools/train_shape_prior.py --train-alongside --first-seed-shard 500 \
        --version shape_prior_v8 --out runs/shape_prior_v8 --init-from splat4d/shape/weights/shape_prior_v7.pt \
        --steps 7000 --budget-minutes 80 --lr 4e-4 --warmup 50 --front-weight 2 --grad-scales 4

(the same run with the default loss, 5,000 steps, scored worse than v7: docs/benchmarks.md, session 10).

shape_prior_v7 (v3's network) continues from v4's weights in two stages on this 2-core CPU
(generation on one core beside training on the other). First v6, 34 minutes on objects whose stacked parts sink
deeper into each other (``--sink``; seeds from shard 300; stopped at step 3,306 of a 58-minute schedule and
exported with ``--export``):

    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 48 --first-seed-shard 300 \
        --sink 0.5 --cups 0 --figures 0 --version shape_prior_v6 --out runs/shape_prior_v6 &
    taskset -c 0 python tools/train_shape_prior.py --train-alongside --first-seed-shard 300 --sink 0.5 --cups 0 \
        --figures 0 --version shape_prior_v6 --out runs/shape_prior_v6 \
        --init-from splat4d/shape/weights/shape_prior_v4.pt --steps 5200 --budget-minutes 58 --lr 4e-4 --warmup 50

then v7, 63 minutes (5,523 steps) from v6 on 48 shards with open containers too (``--cups 0.15``, seeds from shard
400) and 24 more with figures (the defaults, ``--figures 0.3``; the first 48 made with ``--figures 0``):

    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 48 --figures 0
    taskset -c 1 python tools/train_shape_prior.py --generate-only --train-shards 72 &
    taskset -c 0 python tools/train_shape_prior.py --train-alongside \
        --init-from splat4d/shape/weights/shape_prior_v6.pt --steps 6000 --budget-minutes 62 --lr 4e-4 --warmup 50

shape_prior_v4 came from v3's weights the same way with v4's data (``--flat 0.3 --faceon 0.06``, no sink, cups or
figures, seeds from shard 60, 48 shards, ``--steps 8000 --budget-minutes 85 --lr 5e-4``).

shape_prior_v3 (corrections to silhouette inflation, ``--in-channels 9``) was made the same way from v2's weights
with ``--version shape_prior_v3 --out runs/shape_prior_v3 --flat 0 --faceon 0 --first-seed-shard 0``, 48 shards,
``--budget-minutes 88 --lr 1e-3`` (88 minutes of training),
and shape_prior_v2 (``--in-channels 8 --version shape_prior_v2 --out runs/shape_prior_v2``, the same data options
as v3) the same way from v1's weights (git history up to commit 6f0f997) with 56 shards and 95 minutes.

Data (``splat4d.shape.procedural``): shards of ``SHARD`` samples in ``<out>/data`` (``train_0000.*.npy``: seeds
0..499, ...; ``val_0000``: seeds from 10,000,000, objects never seen in training), uint8 RGB / alpha and float16
front / thickness in crop units, memory-mapped. Generating costs ~35 ms a sample on one core and a training step of
16 samples ~1.4 s, so shards are made ahead (``--generate-only`` in the background before training) rather than
interleaved; training samples from every shard present (random horizontal flips, colour jitter), and with
``--train-alongside`` picks up the shards a parallel ``--generate-only`` finishes, at each validation.

Training: Adam, warm-up then cosine decay over ``--steps``; loss (``shape_loss``) = L1 of shift-invariant front +
L1 of thickness inside the mask + gradient matching of both at 2 scales + elevation L1 / 45 degrees. Every
``--ckpt-minutes`` a resumable checkpoint (model, optimiser, step, RNG states) goes to ``<out>/ckpt_latest.pt``; a
rerun resumes from it. Every ``--val-every`` steps the validation split is scored (loss, thickness / front MAE in
crop units, elevation MAE in degrees) into ``<out>/log.csv``, ``<out>/metrics.json`` and ``<out>/loss_curve.png``;
the baselines (a constant thickness, Poisson silhouette inflation as ``splat4d.depth.geometric`` does it) are scored
once into ``<out>/baselines.json``. At the end of the schedule, or at ``--deadline-utc``, or with ``--export``, the
weights are written to ``splat4d/shape/weights/<version>.pt`` (fp16) with a
``.json`` manifest (version, sha256, validation metrics). For v3 each shard also gets its inflation planes at the
training resolution (``<name>.inflation96.npy``), computed once when the shard is first used.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import splat4d  # noqa: F401  first: its thread policy must be set before torch loads OpenMP
import torch
import torch.nn.functional as F
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from splat4d.shape.framing import cut_by_frame, random_cut  # noqa: E402
from splat4d.shape.network import (INFLATION_CHANNELS, RESOLUTION, VERSION_OF_CHANNELS, WEIGHTS_DIR,  # noqa: E402
                                   ShapeUNet, inflation_plane, network_input, param_count, save_packaged)
from splat4d.shape.procedural import write_shard  # noqa: E402

SHARD = 500
VAL_SEED0 = 10_000_000
VAL_CUT_SEED = 13  # the frame edges of the cut validation split (sample i: np.random.default_rng([13, i]))
FIELDS = ("rgb", "alpha", "front", "thickness", "elevation")


@dataclass
class Args:
    out: Path = Path("runs/shape_prior_v7")
    """Output folder: data/, checkpoints, logs."""
    version: str = "shape_prior_v7"
    """The version recorded in the packaged weights' manifest (v4: v3's network on data with ``flat`` and
    ``faceon``; v6 and v7: also ``sink``, then ``cups`` and ``figures``); the default weights file is named after
    it."""
    squash: float = 0.5
    """Fraction of the samples scaled along the view direction (0.35-1.6x): the same silhouette over another depth,
    so thickness must come from shading and texture (``splat4d.shape.procedural.render_sample``; 0 for v1's data)."""
    level: float = 0.35
    """Fraction of the samples seen from a near-level camera (elevation -4..6 degrees; 0 for v1's data)."""
    level_exact: float = 0.0
    """Fraction of those near-level cameras exactly level (elevation 0, a camera at the object's height, as product
    photos are shot), so that a picture that cannot tell -4 from 6 degrees is read level rather than at the band's
    middle (0 up to v23's data)."""
    flat: float = 0.3
    """Fraction of the samples under shadeless light (ambient 0.85-1, like an overcast sky or the quality
    benchmark's environment light), so shape must come from the outline and the texture (0 up to v3's data)."""
    first_seed_shard: int = 400
    """Training shard i holds the objects of seeds (i + first_seed_shard) * SHARD onwards, so each version trains on
    objects the earlier ones never saw: v7 from 400, v6 300, v4 60 (past v2's and v3's shards 0-55), v1-v3 0."""
    faceon: float = 0.06
    """Fraction of the samples that are a thin disc, board or dish seen within 35 degrees of its face (0 up to v3's
    data)."""
    faceon_thick: float = 0.0
    """Fraction of those face-on samples that are deep instead (a box, a cylinder end-on: the same picture), so the
    outline of a face-on object does not mean "thin" (0 in v4's data)."""
    faceon_boxes: float = 0.0
    """Fraction of the face-on samples that are a deep box (``faceon_thick`` aside), so that a face-on rectangle
    is mostly a box and a face-on disc mostly thin (0 up to v7's data; v8's last 24 shards 0.5 with ``--faceon
    0.15``)."""
    sink: float = 0.5
    """Fraction of the objects whose stacked parts sink 5-45% into each other instead of 5%, so the overlap of
    stacked round parts is no cue of the elevation (0 in v4's data)."""
    cups: float = 0.15
    """Fraction of the objects standing on an open container (a cup, a bowl), whose inside shows from above (0 in
    v4's and v6's data)."""
    figures: float = 0.3
    """Fraction of the samples that are a figure (a round body, a round head sunk into it, sometimes a middle ball
    and a hat: a snowman, a toy), level a stack of overlapping round shapes (0 in v4's and v6's data)."""
    saucers: float = 0.0
    """Fraction of the samples that are something (mostly a cup or a bowl) standing on a saucer or a plate, seen
    from 10-45 degrees above (``splat4d.shape.procedural.saucer_object``), the way cups are photographed (0 up to
    v8's data)."""
    attached: float = 0.0
    """Fraction of the samples that are a body with parts fixed to its front face (a lens on a camera, a block in
    front of a taller one; ``splat4d.shape.procedural.attached_object``), seen from the front (0 up to v10's
    data)."""
    faceon_wide: float = 0.0
    """Fraction of the face-on boxes and boards whose face is 1.2-2.4x as wide as high (a shoebox, a book lying;
    up to v10's data at most 1.2x)."""
    steep: float = 0.0
    """Fraction of the samples seen from 45-80 degrees above (a cup on its saucer, food on a plate, a flat lay;
    the rest of the data stops at 45; not face-on or attached ones). Without it v10 reads cups on saucers seen from
    45-80 degrees (63.8 on average) as 20.3 (``tools/shape_probes.py``, 2026-12-04; 0 up to v13's data)."""
    faceon_cutouts: float = 0.0
    """Fraction of the face-on samples that are thin cut-outs (a sign, a sticker, a logo's shape: a thin slab of
    random smooth outlines), which shape_prior_v17 read as seen from above (0 up to v17's data)."""
    faceon_square: float = 0.0
    """Fraction of the face-on samples turned exactly face-on (no side shows) and not squashed along the view
    (0 up to v22's data; ``splat4d.shape.procedural.render_sample``)."""
    in_channels: int = 9
    """10: also a plane marking the pixels outside the photo's frame (shape_prior_v13, with ``truncate``); 9:
    silhouette inflation's height is an input too and the network predicts corrections to inflation
    (shape_prior_v3); 8: the camera's elevation is an input, given on a fraction ``elevation_given`` of the
    training samples and unknown on the rest (shape_prior_v2, and v3); 6: image, mask and pixel coordinates only
    (shape_prior_v1)."""
    truncate: float = 0.0
    """Fraction of the training samples cut by a frame edge as they are drawn (``splat4d.shape.framing.cut_by_frame``,
    ``random_cut``: a side, 5-45% of the silhouette cut off, or the edge just beyond it, the mask sometimes stopping
    short of it) and re-framed, the outside plane marking where the photo ended (needs ``in_channels`` 10; 0 up to
    v12). With it, validation also
    scores the validation split cut by fixed random frame edges (``val_cut_*``)."""
    front_weight: float = 1.0
    """Weight of the front's L1 and gradient terms in the training loss (thickness 1; 1 up to v7). Validation
    scores the default loss whatever this is."""
    grad_scales: int = 2
    """Resolutions of the gradient-matching loss (2: full and half, up to v7; 4 adds a quarter and an eighth, where
    a tilted or bulging front costs more)."""
    thickness_quantile: float = 0.5
    """The quantile of the thickness that the loss's thickness term asks for (a pinball loss: reading too thin
    costs 2q, too thick 2(1 - q) per unit; 0.5 is L1, as up to v18). Above 0.5 a thickness the picture leaves open
    (a box seen face-on under even light) is read toward the thicker of what it might be, while one the picture
    fixes is read as before: the L1 median hedges between a card and a brick, which users see as a card.
    Validation scores the L1 whatever this is."""
    hypotheses: int = 1
    """Thickness maps the network predicts (with ``in_channels`` 9 or 10), and which of them fits best
    (``ShapeUNet(hypotheses=K)``, shape_prior_v21): multiple-choice learning, each sample's best-fitting hypothesis
    (least thickness L1 over its mask) takes the loss (the others ``wta_eps`` of it, shared) and a choice head learns
    which one that is; inference takes the likeliest. Meant to part, where the picture leaves the thickness open
    (face-on, a card or a brick), into its modes, the choice then the mode rather than the median; measured from v10's
    weights in 60 minutes (v21, v22), the maps parted into a thinner and a thicker reading of every object and the
    choice learned only their base rate (docs/benchmarks.md, session 25). 1: one thickness, the L1 (up to v20)."""
    wta_eps: float = 0.05
    """With ``hypotheses`` > 1, the share of the thickness loss that the hypotheses that did not fit best take
    between them (so none is left untrained)."""
    choice_weight: float = 0.1
    """With ``hypotheses`` > 1, the weight of the choice head's cross-entropy (which hypothesis fits best)."""
    hypothesis_spread: float = 1.4
    """With ``hypotheses`` > 1 and ``init_from`` a one-thickness network: hypothesis 1 starts that thickness times
    this, hypothesis 2 divided by it (3 times it squared, ...), hypothesis 0 as it was, so that they part at once."""
    elevation_given: float = 0.5
    """Fraction of the training samples whose true elevation the network is given (with ``in_channels`` 8 or 9)."""
    workers: int = 1
    """Processes generating the data shards."""
    train_alongside: bool = False
    """Start training on the shards present (at least val_0000 and one training shard) without generating the
    missing ones: a ``--generate-only`` process makes them meanwhile, and training picks each new shard up at its
    next validation."""
    steps: int = 6000
    """Most optimiser steps; the schedule ends at ``steps`` or ``budget_minutes``, whichever comes first."""
    budget_minutes: float = 85.0
    """Wall-clock budget of the training loop (summed over resumes): the cosine decay follows
    max(step / steps, elapsed / budget), so the schedule completes on time however busy the CPU is."""
    resolution: int = 96
    """Training / inference resolution (the 128 px data are area-downsampled when smaller). 96 measured here: in 9
    minutes of one core (two runs side by side) 96 px reached validation thickness MAE 0.077 vs 0.079 at 128 px,
    with twice the steps; the packaged model resizes any input."""
    batch: int = 16
    """Samples per step."""
    lr: float = 2e-3
    """Peak learning rate (Adam)."""
    warmup: int = 100
    """Linear warm-up steps."""
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    """U-Net channel widths per level (5 levels: 2.0M parameters)."""
    train_shards: int = 20
    """Generate missing training shards up to this many before training (each SHARD=500 samples); training uses
    every shard present."""
    val_samples: int = 500
    """Validation samples (the first of the val shard)."""
    val_every: int = 250
    """Score the validation split every this many steps."""
    ckpt_minutes: float = 4.0
    """Write a resumable checkpoint this often (wall clock)."""
    deadline_utc: str = ""
    """HH:MM (UTC, today): a hard stop (checkpoint + export) even if the schedule is not finished."""
    threads: int = 1
    """torch threads (1: a second thread is slower when another process shares the CPU)."""
    seed: int = 0
    """Seed of the sampling order and initialisation."""
    ema: float = 0.0
    """Decay per step of an exponential moving average of the weights (0: none; 0.998 averages about the last 500
    steps). With it, validation scores and the export take the average (every floating entry of the state dict,
    BatchNorm's running statistics too), and the last raw weights are exported beside the run as ``<out>/raw.pt``
    (with its manifest) to compare."""
    export: bool = False
    """Only export the latest checkpoint's weights to the package and exit."""
    generate_only: bool = False
    """Only generate the data shards and exit."""
    weights: Path | None = None
    """Where the packaged weights go (default: ``splat4d/shape/weights/shape_prior_vN.pt`` for the version that
    ``in_channels`` makes)."""
    init_from: Path | None = None
    """Start a new schedule from these packaged weights (e.g. the shipped splat4d/shape/weights/shape_prior_v2.pt,
    to train on from where the last session stopped) instead of random ones; a checkpoint in --out wins. v1's six
    input channels are extended by two zero-weighted ones when ``in_channels`` is 8."""


# ----------------------------------------------------------------------------------------------------------- data
def shard_names(folder: Path, split: str) -> list[str]:
    return sorted(p.name[: -len(".done")] for p in folder.glob(f"{split}_*.done"))


def _write(job: tuple[Path, str, int, dict]) -> str:
    folder, name, seed0, options = job
    t = time.time()
    write_shard(folder, name, range(seed0, seed0 + SHARD), RESOLUTION, **options)
    return f"{name}: {SHARD / (time.time() - t):.1f} samples/s"


def generate(folder: Path, train_shards: int, options: dict, workers: int = 1, first_seed_shard: int = 0) -> None:
    """The missing shards (val_0000 first), ``workers`` processes at a time; each marked done when complete, so an
    interrupted generation resumes where it stopped."""
    jobs = [(folder, "val_0000", VAL_SEED0, options)]
    jobs += [(folder, f"train_{i:04d}", (i + first_seed_shard) * SHARD, options) for i in range(train_shards)]
    jobs = [j for j in jobs if not (folder / f"{j[1]}.done").exists()]
    if not jobs:
        return
    print(f"generating {len(jobs)} shards of {SHARD} samples ({workers} processes, {options})", flush=True)
    if workers <= 1:
        for job in jobs:
            print(_write(job), flush=True)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        for line in pool.imap_unordered(_write, jobs):
            print(line, flush=True)


class ShardPool:
    """Every sample of the named shards, memory-mapped; ``batch(idx, rng, augment)`` -> tensors."""

    def __init__(self, folder: Path, names: list[str], inflation_resolution: int | None = None):
        self.folder, self.names, self.arrays, self.index = folder, [], [], []
        self.inflation_resolution = inflation_resolution
        self.add(names)

    def add(self, names: list[str]) -> int:
        """Memory-map the shards of ``names`` not in the pool yet (shards a generator finished since); returns how
        many were added. With ``inflation_resolution`` each shard also gets its inflation planes at that resolution
        (shape_prior_v3's ninth input), from ``<name>.inflation<res>.npy``, made once when missing."""
        new = [n for n in names if n not in self.names]
        for n in new:
            arrays = {k: np.load(self.folder / f"{n}.{k}.npy", mmap_mode="r") for k in FIELDS}
            if self.inflation_resolution:
                arrays["inflation"] = inflation_shard(self.folder, n, self.inflation_resolution)
            self.arrays.append(arrays)
            self.index += [(len(self.arrays) - 1, j) for j in range(len(self.arrays[-1]["elevation"]))]
            self.names.append(n)
        return len(new)

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, idx, rng: np.random.Generator | None = None, resolution: int = RESOLUTION, channels: int = 6,
              given: float = 0.0, cut: float = 0.0) -> dict[str, torch.Tensor]:
        """Samples ``idx``; ``rng`` turns augmentation on; with ``channels`` 8 a fraction ``given`` of them (random
        with ``rng``, else all when ``given`` >= 1) carry their true elevation in the input. A fraction ``cut`` of
        them is cut by a frame edge (:func:`~splat4d.shape.framing.cut_by_frame`; drawn with ``rng``, or without it
        the edge of sample i from ``VAL_CUT_SEED``, so a validation batch is the same every time)."""
        items = [self.index[i] for i in idx]
        get = lambda k: np.stack([self.arrays[s][k][j] for s, j in items])  # noqa: E731
        rgb = get("rgb").astype(np.float32) / 255
        alpha = get("alpha").astype(np.float32) / 255
        front = get("front").astype(np.float32)
        thick = get("thickness").astype(np.float32)
        elev = get("elevation").astype(np.float32)
        inflation = get("inflation").astype(np.float32) if channels >= INFLATION_CHANNELS else None
        outside = np.zeros_like(alpha)
        cut_rows = []
        for b, i in enumerate(idx) if cut > 0 else ():
            r = rng if rng is not None else np.random.default_rng([VAL_CUT_SEED, int(i)])
            if r.random() < cut:
                side, fraction, gap = random_cut(r)
                c = cut_by_frame(rgb[b], alpha[b], front[b], thick[b], side, fraction, gap)
                rgb[b], alpha[b], front[b], thick[b], outside[b] = (c[k] for k in (
                    "rgb", "alpha", "front", "thickness", "outside"))
                cut_rows.append(b)
        if rng is not None:
            flip = rng.random(len(idx)) < 0.5
            for arr in (rgb, alpha, front, thick, outside) + ((inflation,) if inflation is not None else ()):
                arr[flip] = arr[flip][:, :, ::-1]
            # colour jitter on the object only (the background stays white, as centre_and_pad makes it)
            a = alpha[..., None]
            gain = rng.uniform(0.7, 1.3, (len(idx), 1, 1, 3)) * rng.uniform(0.75, 1.25, (len(idx), 1, 1, 1))
            premultiplied = (rgb - (1 - a)) * gain + rng.normal(0, 0.015, rgb.shape) * a
            rgb = (np.clip(premultiplied, 0, a) + (1 - a)).astype(np.float32)
            hard = rng.random(len(idx)) < 0.3  # some segmenters return hard masks
            alpha[hard] = (alpha[hard] >= 0.5).astype(np.float32)
        valid = torch.from_numpy(np.isfinite(thick).astype(np.float32))
        rgb_t, alpha_t, outside_t = torch.from_numpy(rgb), torch.from_numpy(alpha), torch.from_numpy(outside)
        front_t, thick_t = torch.from_numpy(np.nan_to_num(front)), torch.from_numpy(np.nan_to_num(thick))
        if resolution != rgb.shape[1]:
            area = lambda x: F.interpolate(x[:, None], size=(resolution, resolution), mode="area")[:, 0]  # noqa: E731
            rgb_t = F.interpolate(rgb_t.permute(0, 3, 1, 2), size=(resolution, resolution), mode="area")
            rgb_t = rgb_t.permute(0, 2, 3, 1).contiguous()
            alpha_t, outside_t = area(alpha_t), area(outside_t)
            v = area(valid)
            front_t, thick_t = area(front_t * valid) / v.clamp_min(1e-6), area(thick_t * valid) / v.clamp_min(1e-6)
            valid = (v > 0.99).float()
        known = (rng.random(len(idx)) < given) if rng is not None else np.full(len(idx), given >= 1)
        shown = torch.from_numpy(np.where(known, elev, np.nan).astype(np.float32))
        if inflation is not None and inflation.shape[1] != resolution:
            raise ValueError(f"inflation planes at {inflation.shape[1]} px, the batch at {resolution} px")
        for b in cut_rows if inflation is not None else ():  # the cut mask's own inflation, as the engine has it
            inflation[b] = inflation_plane(alpha_t[b].numpy())
        x = network_input(rgb_t, alpha_t, shown, channels, None if inflation is None else torch.from_numpy(inflation),
                          outside_t)
        return {"x": x, "mask": (alpha_t >= 0.5) & (valid > 0), "outside": outside_t,
                "front": front_t, "thickness": thick_t, "elevation": torch.from_numpy(elev)}


def inflation_shard(folder: Path, name: str, resolution: int) -> np.ndarray:
    """(N, res, res) float16 :func:`~splat4d.shape.network.inflation_plane` of each sample's alpha area-resized to
    ``resolution`` (what the network sees), cached in ``<name>.inflation<res>.npy`` (written atomically)."""
    path = folder / f"{name}.inflation{resolution}.npy"
    if not path.exists():
        alpha = torch.from_numpy(np.load(folder / f"{name}.alpha.npy").astype(np.float32) / 255)
        if alpha.shape[1] != resolution:
            alpha = F.interpolate(alpha[:, None], size=(resolution, resolution), mode="area")[:, 0]
        planes = np.stack([inflation_plane(a) for a in alpha.numpy()]).astype(np.float16)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, planes)
        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


# ----------------------------------------------------------------------------------------------------------- loss
def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per sample mean of ``x`` (B, H, W) over ``m``, (B, 1, 1)."""
    m = m.float()
    return ((x * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1))[:, None, None]


def _grad_l1(err: torch.Tensor, m: torch.Tensor, scales: int = 2) -> torch.Tensor:
    """Mean |finite differences| of ``err`` where both pixels are inside ``m``, at ``scales`` resolutions (full,
    half, quarter, ...: each halving makes a slow error -- a tilt, a bulge over a flat face -- count twice as much
    per pixel step)."""
    total = err.new_zeros(())
    for scale in range(scales):
        if scale:
            mf = F.avg_pool2d(m.float()[:, None], 2)[:, 0]
            err = F.avg_pool2d((err * m)[:, None], 2)[:, 0] / mf.clamp_min(1e-6)
            m = mf > 0.99
        mx, my = m[:, :, 1:] & m[:, :, :-1], m[:, 1:] & m[:, :-1]
        dx, dy = (err[:, :, 1:] - err[:, :, :-1]).abs(), (err[:, 1:] - err[:, :-1]).abs()
        total = total + (dx * mx).sum() / mx.sum().clamp_min(1) + (dy * my).sum() / my.sum().clamp_min(1)
    return total


def shape_loss(pred, batch, front_weight: float = 1.0, grad_scales: int = 2,
               thickness_quantile: float = 0.5, wta_eps: float = 0.05,
               choice_weight: float = 0.1) -> tuple[torch.Tensor, dict[str, float]]:
    """Front (shift-invariant, times ``front_weight``) + thickness L1 inside the mask (with ``thickness_quantile``
    q != 0.5 the pinball loss of that quantile, scaled so that q = 0.5 is the L1: too thin costs 2q, too thick
    2(1 - q)), gradient matching of both at ``grad_scales`` resolutions (the front's times ``front_weight`` too),
    elevation L1 / 45 degrees. The defaults are the loss up to v7 (and validation's, so that its loss compares
    across versions).

    ``pred`` of four, ``(front, thicknesses (B, K, H, W), elevation, logits (B, K))`` (``ShapeUNet(hypotheses=K)``,
    ``all_hypotheses``): per sample the hypothesis of least thickness L1 over the mask is the winner; the thickness
    and its gradient terms are the winner's times 1 - ``wta_eps`` plus the others' mean times ``wta_eps``, and the
    cross-entropy of ``logits`` against the winner, times ``choice_weight``, is added (``parts["choice"]``)."""
    if len(pred) == 4:
        front, thicks, elev, logits = pred
    else:
        (front, thick, elev), logits = pred, None
        thicks = thick[:, None]
    m = batch["mask"]
    fe = (front - _masked_mean(front, m)) - (batch["front"] - _masked_mean(batch["front"], m))
    mf = m.float()
    cnt = mf.sum((1, 2)).clamp_min(1)
    l_front = ((fe.abs() * mf).sum((1, 2)) / cnt).mean()
    te = thicks - batch["thickness"][:, None]  # (B, K, H, W)
    side = torch.where(te < 0, 2 * thickness_quantile, 2 * (1 - thickness_quantile))  # 1 everywhere at q = 0.5
    per = (te.abs() * side * mf[:, None]).sum((2, 3)) / cnt[:, None]  # (B, K)
    k = per.shape[1]
    if k == 1:
        weight = torch.ones_like(per)
    else:
        winner = per.detach().argmin(1)
        weight = torch.full_like(per, wta_eps / (k - 1))
        weight[torch.arange(len(winner)), winner] = 1.0 - wta_eps
    l_thick = (per * weight).sum(1).mean()
    l_grad_thick = sum(_grad_l1(te[:, j] * weight[:, j, None, None], m, grad_scales) for j in range(k))
    l_grad = front_weight * _grad_l1(fe, m, grad_scales) + l_grad_thick
    l_elev = (elev - batch["elevation"]).abs().mean() / 45.0
    loss = front_weight * l_front + l_thick + 0.5 * l_grad + 0.5 * l_elev
    parts = {"loss": loss, "front": l_front, "thick": l_thick, "grad": l_grad, "elev": l_elev}
    if logits is not None and k > 1:
        l_choice = F.cross_entropy(logits, winner)
        loss = loss + choice_weight * l_choice
        parts.update(loss=loss, choice=l_choice)
    return loss, {k_: float(v.detach()) for k_, v in parts.items()}


# ----------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: ShapeUNet, val: ShardPool, n: int, resolution: int = RESOLUTION,
             cut: bool = False) -> dict[str, float]:
    """Validation loss parts and MAEs with the elevation unknown; with an 8-channel model also the thickness and
    front MAE with the true elevation given (``*_given``); with ``cut`` also the MAEs of the split cut by its fixed
    frame edges (``val_cut_*``, every sample cut or bordered by the frame)."""
    out = _evaluate(model, val, n, resolution, 0.0)
    if model.takes_elevation:
        given = _evaluate(model, val, n, resolution, 1.0)
        out.update(val_thickness_mae_given=given["val_thickness_mae"], val_front_mae_given=given["val_front_mae"])
    if cut:
        cuts = _evaluate(model, val, n, resolution, 0.0, cut=1.0)
        out.update({f"val_cut_{k[4:]}": cuts[k] for k in ("val_thickness_mae", "val_front_mae",
                                                            "val_elevation_mae_deg")})
    return out


@torch.no_grad()
def _evaluate(model: ShapeUNet, val: ShardPool, n: int, resolution: int, given: float,
              cut: float = 0.0) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    per_thick, per_front, per_elev = [], [], []
    for s in range(0, n, 50):
        b = val.batch(range(s, min(n, s + 50)), resolution=resolution, channels=model.in_channels, given=given,
                      cut=cut)
        if model.hypotheses > 1:  # the network's own reading of its maps (its ``choice``), from the one pass
            front, thicks, elev, logits = model(b["x"], all_hypotheses=True)
            pred, pick = (front, model.read(thicks, logits), elev), logits.argmax(1)
        else:
            pred = model(b["x"])
        _, parts = shape_loss(pred, b)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v * len(b["elevation"])
        m = b["mask"].float()
        cnt = m.sum((1, 2)).clamp_min(1)
        per_thick.append(((pred[1] - b["thickness"]).abs() * m).sum((1, 2)) / cnt)
        if model.hypotheses > 1:  # the best hypothesis's error (what a perfect choice would give), the choices
            each = ((thicks - b["thickness"][:, None]).abs() * m[:, None]).sum((2, 3)) / cnt[:, None]
            sums["thickness_mae_best"] = sums.get("thickness_mae_best", 0.0) + float(each.min(1).values.sum())
            sums["choice_accuracy"] = sums.get("choice_accuracy", 0.0) + float((each.argmin(1) == pick).sum())
            for k in range(model.hypotheses):  # how often each map is the one read
                sums[f"picked_{k}"] = sums.get(f"picked_{k}", 0.0) + float((pick == k).sum())
        fe = (pred[0] - _masked_mean(pred[0], b["mask"])) - (b["front"] - _masked_mean(b["front"], b["mask"]))
        per_front.append((fe.abs() * m).sum((1, 2)) / cnt)
        per_elev.append((pred[2] - b["elevation"]).abs())
    model.train()
    out = {f"val_{k}": v / n for k, v in sums.items()}
    out.update(val_thickness_mae=float(torch.cat(per_thick).mean()), val_front_mae=float(torch.cat(per_front).mean()),
               val_elevation_mae_deg=float(torch.cat(per_elev).mean()))
    return out


def baselines(val: ShardPool, train: ShardPool, n: int, resolution: int = RESOLUTION) -> dict[str, float]:
    """Thickness / front MAE (crop units, mean over samples of the in-mask mean) of: a constant thickness (the
    median of 2,000 training samples' pixels); Poisson inflation as ``--depth.backend geometric`` does it
    (height = 0.7 sqrt(2 u) px, thickness = 2 height / side_px with a mirrored back, front = -height / side_px); the
    same with the best single scale for the validation split (an oracle, an upper bound for inflation); a constant
    elevation (the training mean)."""
    from splat4d.depth.geometric import poisson_height

    tb = train.batch(np.arange(0, len(train), max(1, len(train) // 2000)), resolution=resolution)
    const = float(tb["thickness"][tb["mask"]].median())
    const_elev = float(tb["elevation"].mean())
    rows = []
    for s in range(0, n, 50):
        b = val.batch(range(s, min(n, s + 50)), resolution=resolution)
        for i in range(len(b["elevation"])):
            m = b["mask"][i].numpy()
            side = m.shape[0]
            h = poisson_height(m) / side  # crop units, thickness factor 1
            t, f = b["thickness"][i].numpy()[m], b["front"][i].numpy()[m]
            rows.append((t, f - f.mean(), h[m], float(b["elevation"][i])))
    scales = np.linspace(0.2, 3.0, 57)
    err_scale = [np.mean([np.abs(2 * k * h - t).mean() for t, _, h, _ in rows]) for k in scales]
    best = float(scales[int(np.argmin(err_scale))])
    mae = lambda f: float(np.mean([f(*r) for r in rows]))  # noqa: E731
    return {
        "constant_thickness": const,
        "thickness_mae_constant": mae(lambda t, f, h, e: np.abs(const - t).mean()),
        "thickness_mae_poisson_0.7": mae(lambda t, f, h, e: np.abs(2 * 0.7 * h - t).mean()),
        "poisson_best_scale": best,
        "thickness_mae_poisson_best_scale": float(min(err_scale)),
        "front_mae_flat": mae(lambda t, f, h, e: np.abs(f).mean()),
        "front_mae_poisson_0.7": mae(lambda t, f, h, e: np.abs(-0.7 * (h - h.mean()) - f).mean()),
        "elevation_mae_constant_deg": mae(lambda t, f, h, e: abs(const_elev - e)),
        "mean_true_thickness": mae(lambda t, f, h, e: t.mean()),
        "samples": len(rows),
    }


# ------------------------------------------------------------------------------------------------------- plotting
def write_curve(rows: list[dict], path: Path) -> None:
    """Train (running) and validation loss against step, drawn with PIL (matplotlib is not a dependency)."""
    from PIL import Image, ImageDraw

    w, h, pad = 720, 420, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    series = {"train": [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") not in (None, "")],
              "val": [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") not in (None, "")]}
    pts = [p for s in series.values() for p in s]
    if not pts:
        return
    x1 = max(p[0] for p in pts) or 1
    ys = [math.log10(max(p[1], 1e-6)) for p in pts]
    y0, y1 = min(ys), max(ys) + 1e-6
    tx = lambda s: pad + (w - 2 * pad) * s / x1  # noqa: E731
    ty = lambda v: h - pad - (h - 2 * pad) * (math.log10(max(v, 1e-6)) - y0) / (y1 - y0)  # noqa: E731
    d.rectangle([pad, pad, w - pad, h - pad], outline="black")
    for name, colour in (("train", (40, 90, 200)), ("val", (220, 60, 40))):
        s = series[name]
        if len(s) > 1:
            d.line([(tx(a), ty(b)) for a, b in s], fill=colour, width=2)
        for a, b in s[-1:]:
            d.text((tx(a) - 60, ty(b) - 14), f"{name} {b:.3f}", fill=colour)
    d.text((pad, 10), f"shape prior loss (log scale {10 ** y0:.3f}..{10 ** y1:.3f}) vs step 0..{x1}", fill="black")
    img.save(path)


# ----------------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, model, opt, step: int, rng: np.random.Generator, elapsed: float,
                    resolution: int, ema: ShapeUNet | None = None, ema_decay: float = 0.0) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "widths": list(model.widths),
                "ema": None if ema is None else ema.state_dict(), "ema_decay": ema_decay,
                "in_channels": model.in_channels, "hypotheses": model.hypotheses,
                "elapsed": elapsed, "resolution": resolution,
                "torch_rng": torch.get_rng_state(), "np_rng": rng.bit_generator.state,
                "py_rng": random.getstate()}, tmp)
    os.replace(tmp, path)


def export(args: Args, model: ShapeUNet | None = None, step: int | None = None, ema: ShapeUNet | None = None) -> None:
    """The weights to the package (the moving average when the run keeps one; the raw ones then go to
    ``<out>/raw.pt``), from ``model`` / ``ema`` or the latest checkpoint."""
    ckpt_path = args.out / "ckpt_latest.pt"
    resolution, decay = args.resolution, args.ema
    if model is None:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model = ShapeUNet(tuple(ck["widths"]), ck.get("in_channels", 6), ck.get("hypotheses", 1))
        model.load_state_dict(ck["model"])
        if ck.get("ema") is not None:
            ema = ShapeUNet(tuple(ck["widths"]), ck.get("in_channels", 6), ck.get("hypotheses", 1))
            ema.load_state_dict(ck["ema"])
            decay = ck.get("ema_decay", decay)  # the run's, whatever this command line says
        step, resolution = ck["step"], ck.get("resolution", resolution)
    metrics = json.loads((args.out / "metrics.json").read_text()) if (args.out / "metrics.json").exists() else {}
    base = json.loads((args.out / "baselines.json").read_text()) if (args.out / "baselines.json").exists() else {}
    extra = {"step": step, "val": metrics.get("last_val", {}), "baselines": base}
    if ema is not None:
        save_packaged(model.eval(), args.out / "raw.pt", resolution=resolution, version=args.version or None,
                      extra={**extra, "val": metrics.get("last_val_raw", {})})
        extra["ema"] = decay
    sha = save_packaged((model if ema is None else ema).eval(), args.weights, resolution=resolution,
                        version=args.version or None, extra=extra)
    print(f"exported step {step}{' (moving average)' if ema is not None else ''} to {args.weights} "
          f"(sha256 {sha[:16]}...)", flush=True)


@torch.no_grad()
def update_ema(ema: ShapeUNet, model: ShapeUNet, decay: float) -> None:
    """``ema`` <- decay ``ema`` + (1 - decay) ``model``, entry by entry of the state dict (integer entries copied)."""
    live = model.state_dict()
    for name, value in ema.state_dict().items():
        if value.is_floating_point():
            value.mul_(decay).add_(live[name], alpha=1.0 - decay)
        else:
            value.copy_(live[name])


# ----------------------------------------------------------------------------------------------------------- train
def init_weights(model: ShapeUNet, path: Path, spread: float = 1.4) -> None:
    """``model`` from the packaged weights at ``path`` of an earlier version. Input planes the old model lacked
    start with zero weight (v1 -> v2: the elevation planes; v2 -> v3: the inflation plane). v3's head predicts
    corrections to inflation, not surfaces, so an older head is dropped and v3's stays zero: the start is the
    old trunk with exactly inflation's output. From one thickness to ``model.hypotheses`` (v21): each new
    hypothesis starts as the old thickness times ``spread`` ** +-1, +-2, ... (its log-scale's bias shifted, its
    offset scaled alike) and the choice logits at 0 (the first, the old thickness, is then picked)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if tuple(blob["widths"]) != model.widths:
        raise SystemExit(f"{path} has widths {blob['widths']}, not {model.widths}: pass --widths")
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    first = "down.0.0.weight"
    extra = model.in_channels - state[first].shape[1]
    if extra > 0:
        state[first] = torch.cat([state[first], state[first].new_zeros(state[first].shape[0], extra, 3, 3)], 1)
    old_k = int(blob.get("hypotheses", 1))
    if model.hypotheses > 1 and old_k == 1 and state["head.weight"].shape[0] == 4:
        w, b = state["head.weight"], state["head.bias"]
        ws, bs = [w], [b]
        for j in range(1, model.hypotheses):
            scale = spread ** (((j + 1) // 2) * (1 if j % 2 else -1))
            ws.append(w[2:4].clone() * torch.tensor([1.0, scale]).view(2, 1, 1, 1))
            bs.append(b[2:4].clone() * torch.tensor([1.0, scale]) + torch.tensor([math.log(scale), 0.0]))
        state["head.weight"], state["head.bias"] = torch.cat(ws), torch.cat(bs)
        last_w, last_b = "elevation.2.weight", "elevation.2.bias"
        state[last_w] = torch.cat([state[last_w], state[last_w].new_zeros(model.hypotheses - 1, state[last_w].shape[1])])
        state[last_b] = torch.cat([state[last_b], state[last_b].new_zeros(model.hypotheses - 1)])
    if state["head.weight"].shape != model.head.weight.shape:
        state["head.weight"], state["head.bias"] = model.head.weight.detach(), model.head.bias.detach()
    model.load_state_dict(state)


def progress(step: int, elapsed: float, args: Args) -> float:
    """Fraction of the schedule done: by steps or by wall clock, whichever is further."""
    return min(1.0, max(step / args.steps, elapsed / (60 * args.budget_minutes)))


def lr_at(step: int, p: float, args: Args) -> float:
    """Linear warm-up, then cosine from ``lr`` to ``lr / 100`` along the progress ``p``."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    return args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p)))


def deadline(args: Args) -> float | None:
    if not args.deadline_utc:
        return None
    hh, mm = (int(x) for x in args.deadline_utc.split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    if args.weights is None:
        args.weights = WEIGHTS_DIR / f"{args.version or VERSION_OF_CHANNELS[args.in_channels]}.pt"
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    if args.export:
        export(args)
        final_eval(args, ShardPool(data, ["val_0000"]), args.val_samples)
        return
    if args.generate_only or not args.train_alongside:
        options = {"squash": args.squash, "level": args.level, "flat": args.flat, "faceon": args.faceon,
                   "faceon_thick": args.faceon_thick, "faceon_boxes": args.faceon_boxes, "sink": args.sink,
                   "cups": args.cups, "figures": args.figures, "saucers": args.saucers,
                   "attached": args.attached, "faceon_wide": args.faceon_wide, "steep": args.steep,
                   "faceon_cutouts": args.faceon_cutouts, "faceon_square": args.faceon_square,
                   "level_exact": args.level_exact}
        generate(data, args.train_shards, options, args.workers, args.first_seed_shard)
    if args.generate_only:
        return
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    planes = args.resolution if args.in_channels >= INFLATION_CHANNELS else None
    val = ShardPool(data, ["val_0000"], planes)
    train = ShardPool(data, shard_names(data, "train"), planes)
    n_val = min(args.val_samples, len(val))
    print(f"{len(train)} training samples in {len(train.arrays)} shards, {n_val} validation samples", flush=True)

    model = ShapeUNet(tuple(args.widths), args.in_channels, args.hypotheses)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, elapsed = 0, 0.0
    ema_state = None
    ckpt = args.out / "ckpt_latest.pt"
    if ckpt.exists():
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        if (tuple(ck["widths"]) != tuple(args.widths) or ck.get("resolution", RESOLUTION) != args.resolution
                or ck.get("in_channels", 6) != args.in_channels or ck.get("hypotheses", 1) != args.hypotheses):
            raise SystemExit(f"{ckpt} has widths {ck['widths']} at {ck.get('resolution')} px, "
                             f"{ck.get('in_channels', 6)} input channels and {ck.get('hypotheses', 1)} thickness "
                             f"hypotheses, not {args.widths} at {args.resolution} px, {args.in_channels} and "
                             f"{args.hypotheses}: pass the same --widths / --resolution / --in-channels / "
                             f"--hypotheses or another --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck.get("elapsed", 0.0)
        torch.set_rng_state(ck["torch_rng"])
        rng.bit_generator.state = ck["np_rng"]
        random.setstate(ck["py_rng"])
        if args.ema and ck.get("ema") is not None:
            ema_state = ck["ema"]
        print(f"resumed from {ckpt} at step {step}, {elapsed / 60:.1f} of {args.budget_minutes} minutes", flush=True)
    elif args.init_from is not None:
        init_weights(model, args.init_from, args.hypothesis_spread)
        print(f"starting from the weights in {args.init_from}", flush=True)
    print(f"ShapeUNet{tuple(args.widths)}: {param_count(model) / 1e6:.2f}M parameters, {args.resolution} px",
          flush=True)
    ema = None
    if args.ema:
        ema = ShapeUNet(tuple(args.widths), args.in_channels, args.hypotheses)
        ema.load_state_dict(ema_state if ema_state is not None else model.state_dict())
        ema.eval()

    if not (args.out / "baselines.json").exists():
        t = time.time()
        base = baselines(val, train, n_val, args.resolution)
        (args.out / "baselines.json").write_text(json.dumps(base, indent=2) + "\n")
        print(f"baselines ({time.time() - t:.0f} s): {base}", flush=True)

    log_path = args.out / "log.csv"
    keys = ["step", "minutes", "lr", "train_loss", "val_loss", "val_thickness_mae", "val_front_mae",
            "val_elevation_mae_deg", "val_thickness_mae_given", "val_cut_thickness_mae", "val_cut_elevation_mae_deg"]
    rows = list(csv.DictReader(log_path.open())) if log_path.exists() else []
    rows = [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows]
    rows = [r for r in rows if r["step"] <= step]
    metrics_path = args.out / "metrics.json"
    stop_at = deadline(args)
    last_ckpt = time.time()
    running: list[float] = []
    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=step, mininterval=30, ncols=100)
    model.train()
    hard_stop = False
    p = progress(step, elapsed, args)
    while p < 1.0:
        t0 = time.time()
        lr = lr_at(step, p, args)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = train.batch(rng.integers(0, len(train), args.batch), rng, args.resolution, args.in_channels,
                            args.elevation_given, args.truncate)
        loss, parts = shape_loss(model(batch["x"], all_hypotheses=args.hypotheses > 1), batch, args.front_weight,
                                 args.grad_scales, args.thickness_quantile, args.wta_eps, args.choice_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if ema is not None:
            update_ema(ema, model, args.ema)
        step += 1
        running.append(parts["loss"])
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(running[-50:]):.4f}", lr=f"{lr:.1e}", p=f"{p:.3f}", refresh=False)
        row = None
        if step % 25 == 0:
            row = {"step": step, "lr": lr, "train_loss": float(np.mean(running[-25:]))}
        elapsed += time.time() - t0
        p = progress(step, elapsed, args)
        if stop_at is not None and time.time() > stop_at:
            tqdm.write(f"deadline {args.deadline_utc} UTC reached at step {step}")
            hard_stop = True
        if step % args.val_every == 0 or p >= 1.0 or hard_stop:
            added = train.add(shard_names(data, "train"))  # shards a parallel --generate-only finished meanwhile
            if added:
                tqdm.write(f"{added} new shard(s): {len(train)} training samples")
            t1 = time.time()
            ev = evaluate(model if ema is None else ema, val, n_val, args.resolution, args.truncate > 0)
            raw = {} if ema is None else {"last_val_raw": {"step": step, **evaluate(model, val, n_val, args.resolution,
                                                                                    args.truncate > 0)}}
            elapsed += time.time() - t1
            row = row or {"step": step, "lr": lr, "train_loss": float(np.mean(running[-25:]))}
            row.update(val_loss=ev["val_loss"], val_thickness_mae=ev["val_thickness_mae"],
                       val_front_mae=ev["val_front_mae"], val_elevation_mae_deg=ev["val_elevation_mae_deg"],
                       val_thickness_mae_given=ev.get("val_thickness_mae_given"),
                       val_cut_thickness_mae=ev.get("val_cut_thickness_mae"),
                       val_cut_elevation_mae_deg=ev.get("val_cut_elevation_mae_deg"))
            metrics_path.write_text(json.dumps({"last_val": {"step": step, "minutes": elapsed / 60, **ev}, **raw},
                                               indent=2) + "\n")
            tqdm.write(f"step {step} ({elapsed / 60:.1f} min): " + ", ".join(f"{k} {v:.4f}" for k, v in ev.items()))
            if raw:
                tqdm.write("  raw weights: " + ", ".join(f"{k} {raw['last_val_raw'][k]:.4f}" for k in
                                                        ("val_thickness_mae", "val_front_mae", "val_elevation_mae_deg")))
        if row is not None:
            row["minutes"] = elapsed / 60
            rows.append(row)
            with log_path.open("w", newline="") as fh:
                wr = csv.DictWriter(fh, keys)
                wr.writeheader()
                wr.writerows([{k: r.get(k) for k in keys} for r in rows])
            write_curve(rows, args.out / "loss_curve.png")
        if time.time() - last_ckpt > 60 * args.ckpt_minutes or p >= 1.0 or hard_stop:
            save_checkpoint(ckpt, model, opt, step, rng, elapsed, args.resolution, ema, args.ema)
            last_ckpt = time.time()
        if hard_stop:
            break
    bar.close()
    export(args, model, step, ema)
    final_eval(args, val, n_val)


def final_eval(args: Args, val: ShardPool, n: int) -> dict:
    """The packaged weights through :class:`ShapePrior` on the validation split at the data's 128 px, against
    Poisson inflation at 128 px (engine default thickness 0.7): ``<out>/final_eval.json``. Thickness MAE as the
    engine runs it (the shape for the estimated elevation), in one pass (hedged over the elevation) and given the
    true elevation; thickness and elevation MAE on the split cut by its fixed frame edges (``*_cut``)."""
    from splat4d.depth.geometric import poisson_height
    from splat4d.shape.network import load_shape_prior

    prior = load_shape_prior(args.weights)
    def sample(i: int, cut: float = 0.0):
        """Validation sample i as the engine gets it: rgb, alpha, outside plane, truth mask, thickness, elevation."""
        b = val.batch([i], cut=cut)
        return (((b["x"][0, :3] + 0.5).permute(1, 2, 0)).numpy(), b["x"][0, 3].numpy(), b["outside"][0].numpy(),
                b["mask"][0].numpy(), b["thickness"][0].numpy(), float(b["elevation"][0]))

    net, net_one, net_given, infl, elev, secs = [], [], [], [], [], []
    for i in range(n):
        rgb, alpha, _, fg, t, true_elev = sample(i)
        t0 = time.perf_counter()
        est = prior(rgb, alpha)
        secs.append(time.perf_counter() - t0)
        fg_eval = fg & (alpha > 0.5)
        net.append(float(np.abs(est.thickness - t)[fg_eval].mean()))
        infl.append(float(np.abs(2 * 0.7 * poisson_height(fg) / fg.shape[0] - t)[fg_eval].mean()))
        elev.append(abs(est.elevation_deg - true_elev))
        net_one.append(float(np.abs(prior(rgb, alpha, condition_on_estimate=False).thickness - t)[fg_eval].mean()))
        if prior.takes_elevation:
            est = prior(rgb, alpha, elevation_deg=true_elev)
            net_given.append(float(np.abs(est.thickness - t)[fg_eval].mean()))
    out = {"samples": n, "thickness_mae_network": float(np.mean(net)), "thickness_mae_network_one_pass":
           float(np.mean(net_one)), "thickness_mae_poisson_0.7": float(np.mean(infl)),
           "network_better_fraction": float(np.mean(np.array(net) < np.array(infl))),
           "elevation_mae_deg": float(np.mean(elev)), "seconds_per_image": float(np.median(secs))}
    if net_given:
        out["thickness_mae_network_elevation_given"] = float(np.mean(net_given))
    cut_thick, cut_elev = [], []  # the split cut by its fixed frame edges (every sample), the outside plane given
    for i in range(n):
        rgb, alpha, outside, fg, t, true_elev = sample(i, cut=1.0)
        est = prior(rgb, alpha, outside=outside)
        fg_eval = fg & (alpha > 0.5)
        cut_thick.append(float(np.abs(est.thickness - t)[fg_eval].mean()))
        cut_elev.append(abs(est.elevation_deg - true_elev))
    out.update(thickness_mae_network_cut=float(np.mean(cut_thick)), elevation_mae_deg_cut=float(np.mean(cut_elev)))
    (args.out / "final_eval.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"final evaluation at 128 px: {out}", flush=True)
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
