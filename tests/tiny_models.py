"""Tiny randomly initialised CLIP-family models, built and saved locally so that tests load them
through the same spec strings a user writes (no download). Fixtures in conftest.py call these."""
from __future__ import annotations

import json

import pytest

TINY_ARCH = "ravl-tiny-clip"
TINY_CFG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_open_clip(root):
    """A registered tiny architecture, its model, and its weights saved as a file and as a folder."""
    open_clip = pytest.importorskip("open_clip")
    import torch
    from safetensors.torch import save_file

    (root / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(root / f"{TINY_ARCH}.json")
    torch.manual_seed(0)
    model, _, transform = open_clip.create_model_and_transforms(TINY_ARCH, pretrained=None)
    model.eval()
    torch.save(model.state_dict(), root / "tiny.pt")
    save_file(model.state_dict(), root / "tiny.safetensors")
    folder = root / "tiny-dir"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": TINY_CFG, "preprocess_cfg": dict(model.visual.preprocess_cfg)}))
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    return {"root": root, "model": model, "transform": transform,
            "tokenizer": open_clip.get_tokenizer(TINY_ARCH), "folder": folder}


def build_tiny_hf(root):
    """Tiny CLIP and SigLIP folders as save_pretrained writes them, with the MiniLM BERT tokenizer."""
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    from ravl.encoders.text_minilm import model_path as minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    vision = dict(tower, image_size=32, patch_size=8)
    text = dict(tower, vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(text, max_position_embeddings=24, bos_token_id=tok.cls_token_id,
                         eos_token_id=tok.sep_token_id),
        vision_config=vision, projection_dim=16)).eval()
    siglip = SiglipModel(SiglipConfig(text_config=dict(text, max_position_embeddings=16),
                                      vision_config=vision)).eval()
    out = {}
    for name, model, proc in [
        ("clip", clip, CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
        ("siglip", siglip, SiglipImageProcessor(size={"height": 32, "width": 32})),
    ]:
        folder = root / name
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        proc.save_pretrained(folder)
        out[name] = {"folder": folder, "model": model, "processor": proc}
    out["tokenizer"] = tok
    return out
