"""Input frames for every mode: one image, a stereo pair, a video or a folder of frames, segmented and cropped by
one square to the working resolution (``Frames``). Every mode's first stage is one of the two loaders here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splat4d.config import LoadConfig, SegmentConfig
from splat4d.load import InputError, LoadedImage, load_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


@dataclass
class Frames:
    """Working frames: the object over white, cropped by one square box and resized to (R, R)."""

    images: np.ndarray
    """(T, R, R, 3) float32 in [0, 1], the object composited over white (T = 1 for a single image)."""
    masks: np.ndarray
    """(T, R, R) float32 in [0, 1]."""
    method: str
    """Which mask source was used ('alpha', 'grabcut', 'none')."""
    box: tuple[int, int, int, int]
    """(x0, y0, side, side): the square of the original frame that became the working frame (may leave it)."""
    original_size: tuple[int, int]
    """(width, height) of the original frame."""
    lefts: np.ndarray | None = None
    """Stereo input only: (T, R, R, 3) raw left crops (not composited: stereo matching needs the background)."""
    rights: np.ndarray | None = None
    """Stereo input only: (T, R, R, 3) raw right crops, by the same box (the pair stays rectified)."""
    outside: np.ndarray | None = None
    """(R, R) float32: the fraction of each working pixel outside the original frame, where the box leaves it
    (``splat4d.segment.outside_of_frame``); None: not known (taken as all inside)."""

    @property
    def image(self) -> np.ndarray:
        """The first (input) frame, (R, R, 3)."""
        return self.images[0]

    @property
    def mask(self) -> np.ndarray:
        """The first frame's mask, (R, R)."""
        return self.masks[0]

    def __len__(self) -> int:
        return len(self.images)


def pick(n: int, max_frames: int) -> np.ndarray:
    """Indices of at most ``max_frames`` of ``n`` frames, evenly spaced, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(max_frames, n)).round().astype(int))


def load_frames(path: Path, max_frames: int, max_side: int = 1024) -> list[np.ndarray]:
    """Frames (H, W, 3) float in [0, 1] from a video file (PyAV) or a folder of images (sorted by name; (H, W, 4)
    with the alpha channel for RGBA cut-outs), evenly subsampled to at most ``max_frames`` and downscaled to at most
    ``max_side``. Only the picked frames are converted and kept, each downscaled while still 8-bit, so long or 4K
    clips do not fill the memory. A video cut short (a partial download) gives the frames before the cut."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        total = len(files)
        frames, names = [], []
        for i in pick(total, max_frames) if total else []:  # RGBA cut-outs keep their alpha: it becomes the mask
            image = load_image(files[i], max_side=max_side)
            frames.append(image.rgb if image.alpha is None else np.dstack([image.rgb, image.alpha]))
            names.append(files[i].name)
    else:
        total, frames = _decode_video(path, max_frames, max_side)
        names = [f"frame {i}" for i in pick(total, max_frames)] if total else []
    if total < 2:
        raise InputError(f"{path} has {total} frame(s); a video mode needs at least 2")
    odd = next((i for i, f in enumerate(frames) if f.shape[:2] != frames[0].shape[:2]), None)
    if odd is not None:
        raise InputError(f"the frames of {path} differ in size: {names[odd]} is {_size(frames[odd])}, "
                         f"{names[0]} {_size(frames[0])}; a clip's frames share one size (one camera)")
    if len({f.shape for f in frames}) != 1:
        raise InputError(f"the frames of {path} mix RGB and RGBA images; give all of them with or all without alpha")
    return [np.ascontiguousarray(f, dtype=np.float32) for f in frames]


def _size(frame: np.ndarray) -> str:
    return f"{frame.shape[1]}x{frame.shape[0]}"


def _decode_video(path: Path, max_frames: int, max_side: int) -> tuple[int, list[np.ndarray]]:
    """(frame count, the picked frames as floats, downscaled to ``max_side`` while 8-bit) of a video file. Two passes:
    one counts (decoding without converting), one keeps the picked frames."""
    import av

    from splat4d.segment import downscaled

    def decoded(container):  # the frames up to the end, or up to where a cut-short file stops decoding
        count = 0
        try:
            for frame in container.decode(video=0):
                count += 1
                yield frame
        except (av.error.FFmpegError, OSError):
            if count == 0:
                raise

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} holds no video stream")
            total = sum(1 for _ in decoded(container))
        wanted = set(pick(total, max_frames).tolist()) if total else set()
        frames = []
        with av.open(str(path)) as container:
            for i, f in enumerate(decoded(container)):
                if i in wanted:
                    frames.append(downscaled(f.to_ndarray(format="rgb24"), max_side).astype(np.float32) / 255.0)
                if i >= max(wanted, default=-1):
                    break
    except (av.error.FFmpegError, OSError) as err:
        reason = getattr(err, "strerror", None) or str(err)  # without FFmpeg's errno and the path again
        raise InputError(f"cannot read {path} as a video ({reason}); use an mp4, mov, mkv, webm or gif file, or a "
                         "folder of frames") from err
    return total, frames


def crop_clip(raw: list[np.ndarray], segment: SegmentConfig, resolution: int, name: str = "frame",
              centred: bool = False) -> Frames:
    """Segment every frame and crop all of them by one square (the union of the object's boxes, padded) resized to
    ``resolution``. ``centred``: the square is centred on the frame's centre (the principal point stays in the
    middle, so the crop is a pinhole camera with a known field of view)."""
    from splat4d.segment import crop_square, foreground_mask, outside_of_frame

    masks_full = []
    method = segment.method
    rgbs = [np.ascontiguousarray(f[..., :3]) for f in raw]
    for i, frame in enumerate(raw):
        alpha = frame[..., 3] if frame.shape[2] == 4 else None
        mask, method = foreground_mask(LoadedImage(rgbs[i], alpha, Path(f"{name}#{i}"), frame.shape[1::-1]), segment,
                                       resolution)
        masks_full.append(mask)
    union = np.any(np.stack(masks_full) > 0.5, axis=0)
    ys, xs = np.nonzero(union)
    padding = 0.0 if method == "none" else segment.padding
    side = int(np.ceil(max(np.ptp(xs) + 1, np.ptp(ys) + 1) / max(1e-3, 1 - 2 * padding)))
    box = (int(round((xs.min() + xs.max() + 1) / 2 - side / 2)), int(round((ys.min() + ys.max() + 1) / 2 - side / 2)),
           side, side)
    if centred:
        h, w = union.shape
        reach = max(w / 2 - box[0], box[0] + side - w / 2, h / 2 - box[1], box[1] + side - h / 2)
        side = 2 * int(np.ceil(reach))
        box = (int(round(w / 2 - side / 2)), int(round(h / 2 - side / 2)), side, side)
    masks = np.stack([np.clip(crop_square(m[..., None], box, resolution, 0.0)[..., 0], 0, 1) for m in masks_full])
    images = np.stack([crop_square(f * m[..., None] + (1 - m[..., None]), box, resolution, 1.0)
                       for f, m in zip(rgbs, masks_full)])
    return Frames(images.astype(np.float32), masks.astype(np.float32), method, box, raw[0].shape[1::-1],
                  outside=outside_of_frame(box, raw[0].shape[1::-1], resolution))


def split_pair(frames: list[np.ndarray], name: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(lefts, rights) of side-by-side stereo frames (left view | right view)."""
    from splat4d.depth.stereo import split_side_by_side

    try:
        lefts, rights = zip(*(split_side_by_side(f) for f in frames))
    except ValueError as err:
        raise InputError(f"{name}: {err}") from None
    return [np.ascontiguousarray(f) for f in lefts], [np.ascontiguousarray(f) for f in rights]


def _with_stereo(frames: Frames, lefts: list[np.ndarray], rights: list[np.ndarray], resolution: int) -> Frames:
    """``frames`` with the raw left and right crops by its box (the same box keeps the pair rectified)."""
    from splat4d.segment import crop_square

    frames.lefts = np.stack([crop_square(f[..., :3], frames.box, resolution, 1.0) for f in lefts])
    frames.rights = np.stack([crop_square(f[..., :3], frames.box, resolution, 1.0) for f in rights])
    return frames


def image_frames(path: Path, load: LoadConfig, segment: SegmentConfig, right: Path | None = None,
                 side_by_side: bool = False) -> Frames:
    """One image (or a rectified stereo pair: ``right``, or ``side_by_side`` in one file) as working ``Frames``."""
    from splat4d.segment import segment as segment_image

    max_side = max(2048, 4 * load.resolution)
    image = load_image(path, max_side=max_side, max_pixels=load.max_input_pixels)
    right_image = None
    if side_by_side:
        (left_rgb,), (right_rgb,) = split_pair([image.rgb], path)
        image = LoadedImage(left_rgb, None, image.path, left_rgb.shape[1::-1])
        right_image = LoadedImage(right_rgb, None, image.path, right_rgb.shape[1::-1])
    elif right is not None:
        right_image = load_image(right, max_side=max_side, max_pixels=load.max_input_pixels)
        if right_image.rgb.shape != image.rgb.shape:
            raise InputError(f"the stereo pair differs in size: {path} is {image.rgb.shape[1::-1]}, "
                             f"{right} is {right_image.rgb.shape[1::-1]}")
    seg = segment_image(image, segment, load.resolution)
    frames = Frames(seg.image[None], seg.mask[None], seg.method, seg.box, image.original_size, outside=seg.outside)
    if right_image is None:
        return frames
    return _with_stereo(frames, [image.rgb], [right_image.rgb], load.resolution)


def clip_frames(path: Path, max_frames: int, load: LoadConfig, segment: SegmentConfig, right: Path | None = None,
                side_by_side: bool = False, centred: bool = False) -> Frames:
    """A video or folder of frames (or a stereo clip: ``right``, or ``side_by_side``) as working ``Frames``."""
    raw = load_frames(path, max_frames)
    right_raw = None
    if side_by_side:
        raw, right_raw = split_pair(raw, path)
    elif right is not None:
        right_raw = load_frames(right, max_frames)
        if len(right_raw) != len(raw) or right_raw[0].shape != raw[0].shape:
            raise InputError(f"the stereo clips differ: {path} has {len(raw)} frames of {raw[0].shape[1::-1]}, "
                             f"{right} {len(right_raw)} of {right_raw[0].shape[1::-1]}")
    frames = crop_clip(raw, segment, load.resolution, name=str(path), centred=centred)
    return frames if right_raw is None else _with_stereo(frames, raw, right_raw, load.resolution)
