"""Build a tiny Stable-Diffusion-shaped pipeline from configs with random weights, offline.

Used by the imagine tests and benchmarks/imagine.py: the folder it writes is what a user's
``diffusers:/path`` folder looks like (model_index.json + one sub-folder per component), so it is
loaded through exactly the same code path. The tokenizer is a byte-level CLIP BPE with no merges
(every character is a token): real CLIPTokenizer files, built here because no CLIP vocabulary
ships with transformers. ``ip_adapter=True`` also writes a tiny IP-Adapter (``ip-adapter.safetensors``
beside an ``image_encoder/`` CLIP vision tower), in the layout diffusers' ``load_ip_adapter`` reads.
"""
from __future__ import annotations

import json
from pathlib import Path

CROSS_DIM = 32


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_tokenizer(folder: Path) -> int:
    """Write vocab.json + merges.txt of a character-level CLIP BPE; returns the vocab size."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    raw = folder / "raw-tokenizer"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (raw / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=32)
    tok.save_pretrained(folder / "tokenizer")
    return len(tokens)


def build_tiny_sd(folder: Path, *, ip_adapter: bool = False, seed: int = 0) -> Path:
    """Save a tiny StableDiffusionPipeline (64x64 output by default) under ``folder``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = write_clip_tokenizer(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_DIM, attention_head_dim=4, norm_num_groups=4)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=64)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=CROSS_DIM, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32,
                                        bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1))
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, image_encoder=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    if ip_adapter:
        write_tiny_ip_adapter(folder / "ip-adapter", unet)
    return folder


def write_tiny_ip_adapter(folder: Path, unet) -> Path:
    """A random IP-Adapter (image projection + to_k_ip/to_v_ip per cross-attention) and its
    CLIP vision tower, saved as ``folder/ip-adapter.safetensors`` + ``folder/image_encoder/``."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder.mkdir(parents=True, exist_ok=True)
    proj_dim = 16
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=proj_dim))
    vision.save_pretrained(folder / "image_encoder")
    g = torch.Generator().manual_seed(1)
    tensors = {"image_proj.proj.weight": torch.randn(CROSS_DIM * 4, proj_dim, generator=g) * 0.1,
               "image_proj.proj.bias": torch.zeros(CROSS_DIM * 4),
               "image_proj.norm.weight": torch.ones(CROSS_DIM), "image_proj.norm.bias": torch.zeros(CROSS_DIM)}
    key_id = 1
    channels = unet.config.block_out_channels
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        for kind in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{key_id}.{kind}.weight"] = torch.randn(hidden, CROSS_DIM, generator=g) * 0.1
        key_id += 2
    save_file(tensors, str(folder / "ip-adapter.safetensors"))
    return folder / "ip-adapter.safetensors"
