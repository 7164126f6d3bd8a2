"""Shared test fixtures: cameras and scenes."""

import torch

from splat4d.paths import look_at
from splat4d.types import Cameras


def front_cameras(width=48, height=40, distance=3.0, n=1, dtype=torch.float64, fov=50.0, spread_deg=25.0):
    """n cameras on an arc in front of the origin, looking at it."""
    az = torch.linspace(-spread_deg, spread_deg, n, dtype=dtype) if n > 1 else torch.zeros(1, dtype=dtype)
    az = torch.deg2rad(az)
    eyes = torch.stack([distance * torch.sin(az), -0.3 * torch.ones_like(az), -distance * torch.cos(az)], -1)
    c2w = look_at(eyes, torch.zeros_like(eyes), torch.tensor([0.0, -1.0, 0.0], dtype=dtype))
    return Cameras.from_fov(c2w, width, height, fov)


def tiny_diffusion_parts(folder, unet_in_channels: int, vocab_size: int = 100):
    """Tiny random UNet, VAE, CLIP text model and a CLIP tokenizer written into ``folder`` (for diffusers pipelines
    built in tests, like diffusers' own tests do)."""
    import json

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8,
                                in_channels=unet_in_channels, out_channels=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32,
                                        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                        vocab_size=vocab_size))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in "abcdefghijklmnopqrstuvwxyz,":
            vocab[c + suffix] = len(vocab)
    tok_dir = folder / "_tokenizer_files"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=16)
    return unet, vae, text, tokenizer


def tiny_depthcrafter(folder):
    """A tiny random Stable Video Diffusion pipeline (VAE, CLIP image encoder, scheduler) and a DepthCrafter-shaped
    UNet (8 input channels: noisy depth latents + the clip's latents) saved with ``save_pretrained``; returns
    (unet_folder, svd_folder)."""
    import torch
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
        num_attention_heads=(2, 4), addition_time_embed_dim=32, projection_class_embeddings_input_dim=96)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                                       down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"])
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, projection_dim=32, num_hidden_layers=2,
                                                             num_attention_heads=4, image_size=32,
                                                             intermediate_size=37, patch_size=4))
    scheduler = EulerDiscreteScheduler(  # SVD's scheduler settings
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
        timestep_type="continuous", use_karras_sigmas=True)
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
                                        feature_extractor=CLIPImageProcessor(crop_size=32, size=32))
    pipe.save_pretrained(folder / "svd")
    unet.save_pretrained(folder / "depthcrafter")
    return folder / "depthcrafter", folder / "svd"
