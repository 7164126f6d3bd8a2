"""Learned-model plumbing: where weights are looked for, and the one clear error when they are missing."""

from __future__ import annotations

from pathlib import Path

OFFLINE_HINT = "Without weights, `--depth.backend geometric --prior.backend warp` (the defaults) runs fully offline."


class ModelNotFoundError(RuntimeError):
    """Weights for a learned backend are not available locally (and downloading is off or impossible)."""


def hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001 - only used in messages
        return "~/.cache/huggingface/hub"


def missing_model_message(model: str, what: str, flag: str, reason: str = "") -> str:
    if Path(model).expanduser().exists():
        where = f"the local folder {model}"
    elif model.startswith((".", "/", "~")):
        where = f"the local folder {model} (it does not exist)"
    else:
        where = f"the Hugging Face cache ({hf_cache_dir()})"
    return (
        f"{what} weights '{model}' were not found in {where}{': ' + reason if reason else ''}. "
        f"Fetch them on a machine with internet access with `huggingface-cli download {model}` (or `hf download "
        f"{model}`) and copy the cache over, point {flag} at a local folder saved with `save_pretrained`, or allow "
        f"downloading with {flag.rsplit('.', 1)[0]}.download. {OFFLINE_HINT}"
    )


def weights_present(model: str) -> tuple[bool, str]:
    """(present, location) for a local folder or a Hugging Face id, without touching the network."""
    path = Path(model).expanduser()
    if path.exists():
        ok = (path / "config.json").is_file() or (path / "model_index.json").is_file()
        return ok, str(path)
    try:
        from huggingface_hub import snapshot_download

        return True, snapshot_download(model, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means: not in the cache
        return False, hf_cache_dir()


def model_dtype(device):
    """fp16 on CUDA, fp32 elsewhere."""
    import torch

    return torch.float16 if device.type == "cuda" else torch.float32


def diffusers_dtype_kwargs(device) -> dict:
    """The dtype keyword of diffusers' ``from_pretrained`` (renamed from torch_dtype to dtype in 0.42, which warns
    about the old name; older releases only know it)."""
    import diffusers
    from packaging.version import Version

    name = "dtype" if Version(diffusers.__version__) >= Version("0.42") else "torch_dtype"
    return {name: model_dtype(device)}


def missing_model_error(err: Exception, model: str, what: str, flag: str) -> ModelNotFoundError:
    """The one-paragraph ``ModelNotFoundError`` for a ``from_pretrained`` that failed with ``err``."""
    reason = (str(err).strip().split(". ")[0] or type(err).__name__)[:160]
    return ModelNotFoundError(missing_model_message(model, what, flag, reason))


def load_diffusers_pipeline(cls, model: str, device, download: bool, what: str, flag: str, **kwargs):
    """``cls.from_pretrained`` with fp16 on CUDA (model CPU offload where accelerate allows), fp32 on CPU, no
    progress bars, and ``ModelNotFoundError`` (one paragraph) when the weights are not here."""
    try:
        pipe = cls.from_pretrained(model, local_files_only=not download, **diffusers_dtype_kwargs(device), **kwargs)
    except (OSError, ValueError) as err:
        raise missing_model_error(err, model, what, flag) from None
    if device.type == "cuda":
        try:
            pipe.enable_model_cpu_offload()
        except Exception:  # noqa: BLE001 - accelerate missing or unsupported: keep everything on the GPU
            pipe.to(device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


KNOWN_MODELS = (
    ("depth", "transformers", "depth-anything/Depth-Anything-V2-Small-hf", "relative depth (default learned model)"),
    ("depth", "transformers", "apple/DepthPro-hf", "metric depth"),
    ("depth", "marigold", "prs-eth/marigold-depth-lcm-v1-0", "diffusion depth, 1-4 steps"),
    ("depth", "depthcrafter", "tencent/DepthCrafter", "video depth UNet (+ the SVD model below)"),
    ("depth", "depthcrafter", "stabilityai/stable-video-diffusion-img2vid-xt", "VAE + CLIP image encoder for DepthCrafter"),
    ("prior", "sd-inpaint", "stabilityai/stable-diffusion-2-inpainting", "diffusion inpainting of warped views"),
    ("prior", "zero123pp", "sudo-ai/zero123plus-v1.2", "six views (+ sudo-ai/zero123plus-pipeline)"),
)


def shape_prior_rows() -> list[dict]:
    """The shape prior's packaged networks, one row each with the part it plays in the default depth stage: present
    and intact (hash-checked), or how to make them."""
    from splat4d.shape.network import (CHECK_WEIGHTS_PATH, FRAME_WEIGHTS_PATH, STEEP_WEIGHTS_PATH, WEIGHTS_PATH,
                                       ShapePriorUnavailable, load_shape_prior)

    roles = ((WEIGHTS_PATH, "front + back depth, elevation", "--export"),
             (FRAME_WEIGHTS_PATH, "objects cut by the photo's frame", "(v13's recipe in its docstring)"),
             (STEEP_WEIGHTS_PATH, "views from 40+ degrees above", "(v17's recipe in its docstring)"),
             (CHECK_WEIGHTS_PATH, "second opinion on steep views", "(v18's recipe in its docstring)"))
    rows = []
    for path, note, how in roles:
        try:
            load_shape_prior(path)
            present = True
        except ShapePriorUnavailable:
            present = False
        rows.append({"stage": "depth", "backend": "shape-prior", "model": f"(packaged) {path.name}",
                     "present": present, "where": str(path),
                     "get": f"reinstall splat4d, or python tools/train_shape_prior.py {how} (trained here, offline)",
                     "note": note})
    return rows


def model_table(extra: list[tuple[str, str, str, str]] = ()) -> list[dict]:
    """One row per backend: what it loads, whether it is here, how to get it."""
    rows = [
        {"stage": "depth", "backend": "geometric", "model": "(built in)", "present": True, "where": "-",
         "get": "nothing to fetch: runs offline", "note": "silhouette inflation"},
        *shape_prior_rows(),
        {"stage": "prior", "backend": "warp", "model": "(built in)", "present": True, "where": "-",
         "get": "nothing to fetch: runs offline", "note": "render + inpaint"},
    ]
    for stage, backend, model, note in (*KNOWN_MODELS, *extra):
        present, where = weights_present(model)
        rows.append({"stage": stage, "backend": backend, "model": model, "present": present, "where": where,
                     "get": "-" if present else f"huggingface-cli download {model}", "note": note})
    return rows
