"""DepthCrafter (Hu et al. 2024): temporally consistent video depth from a video diffusion model.

DepthCrafter fine-tunes Stable Video Diffusion's UNet to denoise *depth* latents conditioned on the clip's own VAE
latents (concatenated on channels) and on one CLIP image embedding per frame. Inference (as the authors' pipeline):
frames in [-1, 1] at a multiple of 64 -> VAE latents (unscaled mode) + CLIP embeddings of each frame -> Euler
denoising of noise latents in windows of ``window`` frames overlapping by ``overlap`` (a later window starts from
the earlier one's latents on the shared frames, re-noised to the first sigma, and the two are blended with a linear
ramp) -> VAE decode -> channel mean. The result is relative inverse depth for the whole clip, normalised to [0, 1]
once over all frames (one scale for the clip: it stays temporally consistent).

Weights: the UNet from ``--depth.model`` (default ``tencent/DepthCrafter``), VAE / CLIP image encoder / scheduler
from ``--depth.base-model`` (default ``stabilityai/stable-video-diffusion-img2vid-xt``), loaded with diffusers'
``from_pretrained``. A CUDA GPU is practically required for real weights (a 1.5 B-parameter UNet).
"""

from __future__ import annotations

import numpy as np
import torch

from splat4d.hub import (ModelNotFoundError, diffusers_dtype_kwargs, load_diffusers_pipeline, missing_model_error,
                            pick_device)
from splat4d.types import DepthMap

DEFAULT_MODEL = "tencent/DepthCrafter"
DEFAULT_BASE_MODEL = "stabilityai/stable-video-diffusion-img2vid-xt"


def _unet_class():
    from diffusers import UNetSpatioTemporalConditionModel

    class DepthCrafterUNet(UNetSpatioTemporalConditionModel):
        """SVD's spatio-temporal UNet with DepthCrafter's conditioning: ``encoder_hidden_states`` (B, T, C) holds
        one CLIP embedding per frame and each frame cross-attends to its own (SVD repeats a single (B, 1, C)
        embedding over the frames; that case is passed through unchanged)."""

        def forward(self, sample, timestep, encoder_hidden_states, added_time_ids, return_dict: bool = True):
            batch_size, num_frames = sample.shape[:2]
            if encoder_hidden_states.shape[1] == 1:
                return super().forward(sample, timestep, encoder_hidden_states, added_time_ids,
                                       return_dict=return_dict)
            if encoder_hidden_states.shape[1] != num_frames:
                raise ValueError(f"{encoder_hidden_states.shape[1]} frame embeddings for {num_frames} frames")
            timesteps = torch.as_tensor(timestep, device=sample.device)
            timesteps = timesteps.reshape(-1)[:1].expand(batch_size)
            emb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))
            time_embeds = self.add_time_proj(added_time_ids.flatten()).reshape((batch_size, -1)).to(emb.dtype)
            emb = (emb + self.add_embedding(time_embeds)).repeat_interleave(num_frames, dim=0)
            sample = self.conv_in(sample.flatten(0, 1))
            context = encoder_hidden_states.flatten(0, 1)[:, None]  # (B*T, 1, C): frame t sees embedding t
            indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)
            skips = (sample,)
            for block in self.down_blocks:
                kwargs = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
                sample, res = block(hidden_states=sample, temb=emb, image_only_indicator=indicator, **kwargs)
                skips += res
            sample = self.mid_block(hidden_states=sample, temb=emb, encoder_hidden_states=context,
                                    image_only_indicator=indicator)
            for block in self.up_blocks:
                res, skips = skips[-len(block.resnets):], skips[:-len(block.resnets)]
                kwargs = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res,
                               image_only_indicator=indicator, **kwargs)
            sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))
            sample = sample.reshape(batch_size, num_frames, *sample.shape[1:])
            if not return_dict:
                return (sample,)
            from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput

            return UNetSpatioTemporalConditionOutput(sample=sample)

    return DepthCrafterUNet


def window_starts(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of each denoising window: ``window`` frames, consecutive windows sharing ``overlap``."""
    if window <= overlap or overlap < 0:
        raise ValueError(f"window ({window}) must be larger than overlap ({overlap}) >= 0")
    spans, start = [], 0
    while True:
        end = min(start + window, num_frames)
        spans.append((start, end))
        if end == num_frames:
            return spans
        start += window - overlap


class DepthCrafterDepth:
    """``DepthEstimator`` (one image = a one-frame clip) and video estimator (``video(frames, masks)``)."""

    def __init__(self, model: str = DEFAULT_MODEL, base_model: str = DEFAULT_BASE_MODEL, device: str = "auto",
                 download: bool = False, steps: int = 5, window: int = 110, overlap: int = 25, seed: int = 0,
                 max_resolution: int = 1024):
        try:
            from diffusers import StableVideoDiffusionPipeline
        except ImportError as err:
            raise ModelNotFoundError("the 'depthcrafter' depth backend needs `pip install splat4d[diffusion]`") from err
        self.device = pick_device(device)
        try:
            unet = _unet_class().from_pretrained(model, local_files_only=not download,
                                                 **diffusers_dtype_kwargs(self.device))
        except (OSError, ValueError) as err:
            raise missing_model_error(err, model, "DepthCrafter UNet", "--depth.model") from None
        self.pipe = load_diffusers_pipeline(StableVideoDiffusionPipeline, base_model, self.device, download,
                                            "Stable Video Diffusion (DepthCrafter's VAE and image encoder)",
                                            "--depth.base-model", unet=unet)
        self.steps, self.window, self.overlap, self.seed = steps, window, overlap, seed
        self.max_resolution = max_resolution
        window_starts(1, window, overlap)  # validate now, not after loading a clip

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> DepthMap:
        return self.video(image[None], mask[None])[0]

    @torch.no_grad()
    def video(self, frames: np.ndarray, masks: np.ndarray) -> list[DepthMap]:
        """(T, H, W, 3) in [0, 1] and (T, H, W) masks -> one 'disparity' DepthMap per frame (0 off the object),
        normalised to [0, 1] over the whole clip."""
        import torch.nn.functional as F

        T, H, W = masks.shape
        disparity = self.infer(torch.from_numpy(np.ascontiguousarray(frames)).float())
        disparity = F.interpolate(disparity[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        disparity = disparity.cpu().double().numpy()
        fg = masks > 0.5
        values = disparity[fg] if fg.any() else disparity.ravel()
        lo, hi = float(values.min()), float(values.max())
        norm = (disparity - lo) / max(hi - lo, 1e-12)
        return [DepthMap.on_mask(norm[t], fg[t], kind="disparity") for t in range(T)]

    def infer(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) in [0, 1] -> (T, H', W') raw decoded disparity (channel mean, in [-1, 1]) at the processing
        resolution (a multiple of 64, longest side <= max_resolution)."""
        pipe = self.pipe
        result = self.denoise(frames)
        T = result.shape[1]
        decoded = torch.cat([pipe.vae.decode(result[0, i:i + 8] / pipe.vae.config.scaling_factor,
                                             num_frames=min(8, T - i)).sample for i in range(0, T, 8)])
        return decoded.float().mean(dim=1).clamp(-1, 1)  # (T, h, w)

    def denoise(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) in [0, 1] -> (1, T, 4, h/8, w/8) denoised depth latents, window by window."""
        import torch.nn.functional as F

        pipe, device = self.pipe, self.device
        dtype = pipe.unet.dtype
        T, H, W, _ = frames.shape
        scale = min(1.0, self.max_resolution / max(H, W))
        h, w = (max(64, int(round(H * scale / 64)) * 64), max(64, int(round(W * scale / 64)) * 64))
        video = F.interpolate(frames.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False,
                              antialias=True).to(device) * 2 - 1  # (T, 3, h, w) in [-1, 1]
        embeds = self._clip_embeddings(video).to(dtype)[None]  # (1, T, C)
        latents_video = torch.cat([pipe.vae.encode(video[i:i + 14].to(dtype)).latent_dist.mode()
                                   for i in range(0, T, 14)])[None]  # (1, T, 4, h/8, w/8), unscaled as in SVD
        added_time_ids = torch.tensor([[7.0, 127.0, 0.0]], device=device, dtype=dtype)  # fps, motion, noise aug
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        noise = torch.randn((1, min(self.window, T), pipe.unet.config.out_channels, *latents_video.shape[-2:]),
                            generator=generator).to(device, dtype)
        scheduler = pipe.scheduler
        result = None
        for k, (start, end) in enumerate(window_starts(T, self.window, self.overlap)):
            scheduler.set_timesteps(self.steps, device=device)
            n = end - start
            # Every window starts from the same noise; shared frames start from the previous window's result.
            latents = noise[:, :n].clone() * scheduler.init_noise_sigma
            shared = min(self.overlap, n) if k > 0 else 0
            if shared:
                latents[:, :shared] = (result[:, start:start + shared]
                                       + noise[:, :shared] * scheduler.sigmas[0].to(device, dtype))
            for t in scheduler.timesteps:
                model_in = torch.cat([scheduler.scale_model_input(latents, t), latents_video[:, start:end]], dim=2)
                noise_pred = pipe.unet(model_in, t, encoder_hidden_states=embeds[:, start:end],
                                       added_time_ids=added_time_ids, return_dict=False)[0]
                latents = scheduler.step(noise_pred, t, latents).prev_sample
            if result is None:
                result = latents
            else:
                ramp = torch.linspace(0, 1, shared + 2, device=device, dtype=dtype)[1:-1].view(1, -1, 1, 1, 1)
                blended = latents[:, :shared] * ramp + result[:, start:start + shared] * (1 - ramp)
                result = torch.cat([result[:, :start], blended, latents[:, shared:]], dim=1)
        return result

    def _clip_embeddings(self, video: torch.Tensor) -> torch.Tensor:
        """(T, 3, h, w) in [-1, 1] -> (T, C) CLIP image embeddings (resized to the encoder's size, CLIP-normalised)."""
        import torch.nn.functional as F

        pipe = self.pipe
        size = pipe.image_encoder.config.image_size
        x = (F.interpolate(video.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
             .clamp(-1, 1) + 1) / 2
        mean = torch.tensor(pipe.feature_extractor.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(pipe.feature_extractor.image_std, device=x.device).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(pipe.image_encoder.dtype)
        return torch.cat([pipe.image_encoder(x[i:i + 14]).image_embeds for i in range(0, len(x), 14)])
