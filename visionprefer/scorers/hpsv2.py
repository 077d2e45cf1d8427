"""HPS v2 / v2.1 (Wu et al., 2023): an OpenCLIP ViT-H-14 fine-tuned on human preferences, run as a
``transformers.CLIPModel`` so that neither open_clip nor torchvision is needed.

The official checkpoints (``HPS_v2_compressed.pt`` / ``HPS_v2.1_compressed.pt`` in the Hub repo ``xswu/HPSv2``)
hold ``{"state_dict": ...}`` with OpenCLIP key names (no prefix) in float16. :func:`openclip_to_hf_clip`
converts such a state dict at load time into a ``CLIPModel`` (fused qkv split into q/k/v, layer norms, MLP
and embeddings renamed, projections transposed; exact GELU, LayerNorm eps 1e-5). All sizes come from the
state dict; the head counts, which a state dict cannot tell, come from an optional ``model_cfg`` entry in the
checkpoint (OpenCLIP config layout) and otherwise from ViT-H-14's (16 and 16).

Score = cosine(image features, text features), both L2-normalised, no logit scale: ``score`` returns the raw
cosine; the HPS benchmark reports 100 x that. The official code path is reproduced exactly:

* image: RGB -> float tensor in [0, 1] -> resize so that the longest side is 224 (``round(side * scale)`` with
  ``scale = 224 / longest``; bicubic via ``torch.nn.functional.interpolate`` on the float tensor, antialiased
  as torchvision >= 0.17 does by default, no clamping; ``antialias=False`` reproduces torchvision < 0.17)
  -> zero-pad to 224 x 224 (left ``pad_w // 2``, top ``pad_h // 2``) -> normalise with the OpenAI CLIP
  mean/std. (hpsv2's ``ResizeMaxSize`` skips resize *and* padding when the longest side is already 224, so it
  cannot batch e.g. a 224 x 150 image; here such an image is padded like any other.)
* text: OpenCLIP's cleaning (``ftfy.fix_text`` when ftfy is installed, ``html.unescape`` twice, strip,
  collapse whitespace, lowercase), then the CLIP BPE (77 tokens, truncated keeping the end token) with a fast
  ``CLIPTokenizer``; features are pooled at the end token (the arg-max id, as OpenCLIP does).
* float32 on CPU; float16 autocast on CUDA (the official ``precision='amp'`` path).

The model is loaded once and used in batches (the official per-call helper reloads the checkpoint on each
call and runs one image at a time).
"""

from __future__ import annotations

import html
import importlib.util
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ._common import as_rgb, batches, check_batch_size, first_line, resolve_device

HPS_REPO = "xswu/HPSv2"
HPS_CHECKPOINTS = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
# The HPS checkpoints ship no tokenizer; any CLIP BPE tokenizer with OpenAI's vocabulary is the same.
DEFAULT_TOKENIZER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ViT-H-14 (what the HPS checkpoints are): head counts are not recoverable from tensor shapes.
VIT_H_14_CFG = {
    "embed_dim": 1024,
    "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24},
}
# Buffers that an OpenCLIP state dict may carry and that have no counterpart (recomputed by the model).
_IGNORED_KEYS = {"attn_mask", "visual.attn_mask"}

try:  # OpenCLIP's tokenizer module uses the ``regex`` package (a transformers dependency); its \s differs
    import regex as _re  # from ``re``'s for a few control characters (e.g. U+001C).
except ImportError:  # pragma: no cover - regex comes with transformers
    _re = re


# ============================================================================================= text
def has_ftfy() -> bool:
    return importlib.util.find_spec("ftfy") is not None


def clean_text(text: str) -> str:
    """OpenCLIP's prompt cleaning: ``whitespace_clean(basic_clean(text)).lower()``.

    ``basic_clean`` = ``ftfy.fix_text`` (skipped when ftfy is not installed) -> ``html.unescape`` twice ->
    strip; ``whitespace_clean`` = runs of whitespace -> one space, strip.
    """
    if has_ftfy():
        import ftfy

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    text = _re.sub(r"\s+", " ", text).strip()
    return text.lower()


def text_cleaning_label() -> str:
    if not has_ftfy():
        return "openclip-without-ftfy"
    from importlib.metadata import version

    return f"openclip (ftfy {version('ftfy')})"


# ============================================================================================= image
def resize_max_geometry(width: int, height: int, size: int = 224) -> tuple[tuple[int, int], tuple[int, ...]]:
    """``((new_h, new_w), (left, top, right, bottom))`` of hpsv2's ``ResizeMaxSize`` for an image."""
    scale = size / float(max(height, width))
    new_h, new_w = (round(d * scale) for d in (height, width)) if scale != 1.0 else (height, width)
    pad_h, pad_w = size - new_h, size - new_w
    return (new_h, new_w), (pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2)


def preprocess_image(image: Any, *, size: int = 224, antialias: bool = True):
    """One image -> normalised float32 tensor ``(3, size, size)``, exactly as hpsv2's ``preprocess_val``.

    ``image`` is a PIL image, a path or an HxWx3 uint8 array (converted to RGB: an alpha channel is dropped).
    """
    import torch
    import torch.nn.functional as F

    rgb = as_rgb(image)
    array = np.array(rgb, dtype=np.uint8, copy=True)  # (H, W, 3), what torchvision's ToTensor reads
    x = torch.from_numpy(array).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    height, width = int(x.shape[1]), int(x.shape[2])
    (new_h, new_w), (left, top, right, bottom) = resize_max_geometry(width, height, size)
    if min(new_h, new_w) < 1:
        raise ValueError(f"image of {width}x{height} is too thin to resize to a longest side of {size}")
    if (new_h, new_w) != (height, width):
        # torchvision's tensor resize: interpolate on the float tensor, align_corners=False, no clamp.
        x = F.interpolate(
            x.unsqueeze(0), size=[new_h, new_w], mode="bicubic", align_corners=False, antialias=antialias
        ).squeeze(0)
    if left or top or right or bottom:
        x = F.pad(x, [left, right, top, bottom], mode="constant", value=0.0)
    mean = torch.as_tensor(OPENAI_CLIP_MEAN, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(OPENAI_CLIP_STD, dtype=torch.float32).view(-1, 1, 1)
    return x.sub_(mean).div_(std)


# ============================================================================================= conversion
def load_openclip_state_dict(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(state_dict, model_cfg or None)`` from an OpenCLIP/HPS ``.pt`` (``{"state_dict": ...}`` or bare).

    Loaded with ``weights_only=True``; a ``module.`` prefix (DDP) is stripped. Raises ``ValueError`` when the
    file is not an OpenCLIP CLIP state dict.
    """
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped; a corrupt one fails again below
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    model_cfg = None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        model_cfg = obj.get("model_cfg")
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ValueError("not a state dict (expected {'state_dict': {name: tensor}})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    for required in ("visual.conv1.weight", "token_embedding.weight", "visual.proj", "text_projection"):
        if required not in obj:
            raise ValueError(f"not an OpenCLIP CLIP state dict (no {required!r})")
    return obj, model_cfg if isinstance(model_cfg, dict) else None


def _count_blocks(state_dict: dict[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in state_dict if (m := pattern.match(k))}
    if indices != set(range(len(indices))):
        raise ValueError(f"non-contiguous transformer blocks under {prefix!r}: {sorted(indices)}")
    return len(indices)


def clip_config_from_openclip(
    state_dict: dict[str, Any],
    model_cfg: dict[str, Any] | None = None,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
):
    """The ``CLIPConfig`` of an OpenCLIP CLIP state dict (sizes from the tensors, heads from ``model_cfg``)."""
    from transformers import CLIPConfig

    conv = state_dict["visual.conv1.weight"]
    v_width, _, patch, patch_w = (int(s) for s in conv.shape)
    t_width = int(state_dict["token_embedding.weight"].shape[1])
    if model_cfg is None and (v_width, t_width) != (1280, 1024):
        raise ValueError(
            "the checkpoint is not ViT-H-14 sized and carries no 'model_cfg' giving the attention head counts"
        )
    cfg = model_cfg if model_cfg is not None else VIT_H_14_CFG
    # OpenCLIP's rules and defaults: vision heads = width // head_width (64); text heads (8).
    v_heads = v_width // int(cfg.get("vision_cfg", {}).get("head_width", 64))
    t_heads = int(cfg.get("text_cfg", {}).get("heads", 8))
    if patch != patch_w:
        raise ValueError(f"non-square patches {patch}x{patch_w} are not supported")
    n_pos = int(state_dict["visual.positional_embedding"].shape[0])
    grid = math.isqrt(n_pos - 1)
    if grid * grid != n_pos - 1:
        raise ValueError(f"{n_pos} vision positions is not a square grid plus a class token")
    for name, width, heads in (("vision", v_width, v_heads), ("text", t_width, t_heads)):
        if heads < 1 or width % heads:
            raise ValueError(f"{name} width {width} is not divisible by {heads} heads")
    act = "quick_gelu" if cfg.get("quick_gelu", False) else "gelu"
    vocab = int(state_dict["token_embedding.weight"].shape[0])
    # CLIP BPE vocabularies end with <|startoftext|>, <|endoftext|> (49406, 49407 for OpenAI's).
    bos = vocab - 2 if bos_token_id is None else bos_token_id
    eos = vocab - 1 if eos_token_id is None else eos_token_id
    text_config = {
        "vocab_size": vocab,
        "hidden_size": t_width,
        "intermediate_size": int(state_dict["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        "num_hidden_layers": _count_blocks(state_dict, "transformer.resblocks."),
        "num_attention_heads": t_heads,
        "max_position_embeddings": int(state_dict["positional_embedding"].shape[0]),
        "hidden_act": act,
        "layer_norm_eps": 1e-5,
        "projection_dim": int(state_dict["text_projection"].shape[1]),
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": eos if pad_token_id is None else pad_token_id,
    }
    vision_config = {
        "hidden_size": v_width,
        "intermediate_size": int(state_dict["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        "num_hidden_layers": _count_blocks(state_dict, "visual.transformer.resblocks."),
        "num_attention_heads": v_heads,
        "num_channels": int(conv.shape[1]),
        "image_size": grid * patch,
        "patch_size": patch,
        "hidden_act": act,
        "layer_norm_eps": 1e-5,
        "projection_dim": int(state_dict["visual.proj"].shape[1]),
    }
    projection = int(state_dict["visual.proj"].shape[1])
    if projection != text_config["projection_dim"]:
        raise ValueError(f"image projection {projection} != text projection {text_config['projection_dim']}")
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection)


def convert_openclip_state_dict(state_dict: dict[str, Any], config) -> dict[str, Any]:
    """OpenCLIP key names -> ``CLIPModel`` key names, as float32 tensors (fused qkv split, projections ^T)."""
    import torch

    sd = {k: v for k, v in state_dict.items() if k not in _IGNORED_KEYS}
    used: set[str] = set()

    def take(key: str):
        used.add(key)
        return sd[key].detach().to(torch.float32)

    out: dict[str, Any] = {}

    def blocks(oc_prefix: str, hf_prefix: str, n_layers: int) -> None:
        for i in range(n_layers):
            b, h = f"{oc_prefix}{i}.", f"{hf_prefix}{i}."
            q, k, v = take(b + "attn.in_proj_weight").chunk(3, dim=0)
            qb, kb, vb = take(b + "attn.in_proj_bias").chunk(3, dim=0)
            for name, w, bias in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
                out[h + f"self_attn.{name}.weight"] = w.contiguous()
                out[h + f"self_attn.{name}.bias"] = bias.contiguous()
            for oc, hf in (
                ("attn.out_proj", "self_attn.out_proj"),
                ("ln_1", "layer_norm1"),
                ("ln_2", "layer_norm2"),
                ("mlp.c_fc", "mlp.fc1"),
                ("mlp.c_proj", "mlp.fc2"),
            ):
                out[h + f"{hf}.weight"] = take(b + f"{oc}.weight")
                out[h + f"{hf}.bias"] = take(b + f"{oc}.bias")

    # text tower
    out["text_model.embeddings.token_embedding.weight"] = take("token_embedding.weight")
    out["text_model.embeddings.position_embedding.weight"] = take("positional_embedding")
    blocks("transformer.resblocks.", "text_model.encoder.layers.", config.text_config.num_hidden_layers)
    out["text_model.final_layer_norm.weight"] = take("ln_final.weight")
    out["text_model.final_layer_norm.bias"] = take("ln_final.bias")
    out["text_projection.weight"] = take("text_projection").T.contiguous()
    # vision tower
    out["vision_model.embeddings.class_embedding"] = take("visual.class_embedding")
    out["vision_model.embeddings.patch_embedding.weight"] = take("visual.conv1.weight")
    out["vision_model.embeddings.position_embedding.weight"] = take("visual.positional_embedding")
    out["vision_model.pre_layrnorm.weight"] = take("visual.ln_pre.weight")
    out["vision_model.pre_layrnorm.bias"] = take("visual.ln_pre.bias")
    blocks(
        "visual.transformer.resblocks.",
        "vision_model.encoder.layers.",
        config.vision_config.num_hidden_layers,
    )
    out["vision_model.post_layernorm.weight"] = take("visual.ln_post.weight")
    out["vision_model.post_layernorm.bias"] = take("visual.ln_post.bias")
    out["visual_projection.weight"] = take("visual.proj").T.contiguous()
    out["logit_scale"] = take("logit_scale") if "logit_scale" in sd else torch.tensor(math.log(1 / 0.07))
    unused = sorted(set(sd) - used - {"logit_scale"})
    if unused:
        more = f" (+{len(unused) - 5} more)" if len(unused) > 5 else ""
        raise ValueError(f"unexpected OpenCLIP keys: {', '.join(unused[:5])}{more}")
    return out


def openclip_to_hf_clip(
    state_dict: dict[str, Any],
    model_cfg: dict[str, Any] | None = None,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
):
    """A float32 ``transformers.CLIPModel`` (eval mode, CPU) holding an OpenCLIP CLIP state dict.

    Built on the meta device and filled by assignment, so a 1B-parameter model costs no random init.
    """
    import torch
    from transformers import CLIPModel

    config = clip_config_from_openclip(
        state_dict, model_cfg, bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id
    )
    converted = convert_openclip_state_dict(state_dict, config)
    with torch.device("meta"):
        model = CLIPModel(config)
    expected = set(model.state_dict())
    if set(converted) != expected:
        missing = sorted(expected - set(converted))[:5]
        extra = sorted(set(converted) - expected)[:5]
        raise ValueError(f"conversion does not match CLIPModel: missing {missing}, unexpected {extra}")
    model.load_state_dict(converted, strict=True, assign=True)
    # Non-persistent buffers (position ids) are not in the state dict: rebuild them on the CPU.
    for module_name, module in model.named_modules():
        for buffer_name, buffer in list(module.named_buffers(recurse=False)):
            if not buffer.is_meta:
                continue
            if buffer_name != "position_ids":
                raise ValueError(f"cannot rebuild buffer {module_name}.{buffer_name}")
            ids = torch.arange(buffer.shape[-1], dtype=buffer.dtype).expand(buffer.shape)
            module.register_buffer(buffer_name, ids, persistent=False)
    return model.eval()


# ============================================================================================= tiny model
def write_tiny_hpsv2_checkpoint(folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """A small random OpenCLIP-layout CLIP checkpoint plus a matching CLIP BPE tokenizer, fully offline.

    Writes ``folder/HPS_tiny.pt`` (``{"state_dict": float16 tensors with OpenCLIP names, "model_cfg": ...}``,
    224 px images in 14 px patches like ViT-H-14, but widths 32/24 and two layers per tower) and
    ``folder/tokenizer/`` (``vocab.json`` + ``merges.txt``). ``HPSv2Scorer(checkpoint=<returned path>)`` then
    loads the tokenizer beside it. The weights are random: scores mean nothing.
    """
    import torch

    from ..models.tiny import write_clip_tokenizer_files

    folder = Path(folder)
    vocab_file, _ = write_clip_tokenizer_files(folder / "tokenizer")
    vocab = len(json.loads(vocab_file.read_text(encoding="utf-8")))
    cfg = {
        "embed_dim": 16,
        "quick_gelu": False,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "head_width": 8, "patch_size": 14},
        "text_cfg": {"context_length": 77, "vocab_size": vocab, "width": 24, "heads": 3, "layers": 2},
    }
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.02, base=0.0):
        return base + scale * torch.randn(*shape, generator=gen)

    def blocks(prefix: str, width: int, layers: int, sd: dict) -> None:
        for i in range(layers):
            b = f"{prefix}{i}."
            sd[b + "ln_1.weight"], sd[b + "ln_1.bias"] = rand(width, scale=0.1, base=1.0), rand(width)
            sd[b + "attn.in_proj_weight"] = rand(3 * width, width, scale=width**-0.5)
            sd[b + "attn.in_proj_bias"] = rand(3 * width)
            sd[b + "attn.out_proj.weight"], sd[b + "attn.out_proj.bias"] = rand(width, width), rand(width)
            sd[b + "ln_2.weight"], sd[b + "ln_2.bias"] = rand(width, scale=0.1, base=1.0), rand(width)
            sd[b + "mlp.c_fc.weight"] = rand(4 * width, width, scale=width**-0.5)
            sd[b + "mlp.c_fc.bias"] = rand(4 * width)
            sd[b + "mlp.c_proj.weight"] = rand(width, 4 * width, scale=(4 * width) ** -0.5)
            sd[b + "mlp.c_proj.bias"] = rand(width)

    v, t, e = cfg["vision_cfg"], cfg["text_cfg"], cfg["embed_dim"]
    vw, tw, patch = v["width"], t["width"], v["patch_size"]
    n_pos = (v["image_size"] // patch) ** 2 + 1
    sd: dict[str, Any] = {
        "positional_embedding": rand(t["context_length"], tw, scale=0.01),
        "text_projection": rand(tw, e, scale=tw**-0.5),
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
        "visual.class_embedding": rand(vw, scale=vw**-0.5),
        "visual.positional_embedding": rand(n_pos, vw, scale=vw**-0.5),
        "visual.proj": rand(vw, e, scale=vw**-0.5),
        "visual.conv1.weight": rand(vw, 3, patch, patch, scale=0.05),
        "visual.ln_pre.weight": rand(vw, scale=0.1, base=1.0),
        "visual.ln_pre.bias": rand(vw),
        "visual.ln_post.weight": rand(vw, scale=0.1, base=1.0),
        "visual.ln_post.bias": rand(vw),
        "token_embedding.weight": rand(vocab, tw),
        "ln_final.weight": rand(tw, scale=0.1, base=1.0),
        "ln_final.bias": rand(tw),
    }
    blocks("visual.transformer.resblocks.", vw, v["layers"], sd)
    blocks("transformer.resblocks.", tw, t["layers"], sd)
    path = folder / "HPS_tiny.pt"
    torch.save({"state_dict": {k: x.to(torch.float16) for k, x in sd.items()}, "model_cfg": cfg}, path)
    return path


# ============================================================================================= scorer
def _normalise_version(version: str) -> str:
    v = str(version).strip().lower().lstrip("v")
    v = {"2": "2.0"}.get(v, v)
    key = f"v{v}"
    if key not in HPS_CHECKPOINTS:
        raise ValueError(f"unknown HPS version {version!r}; known: {', '.join(HPS_CHECKPOINTS)}")
    return key


def _default_downloader(repo_id: str, filename: str) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id=repo_id, filename=filename)


class HPSv2Scorer:
    """HPS v2 / v2.1 scores: ``score(prompts, images)`` gives the raw cosine per image (HPS = 100 x that).

    ``checkpoint`` is a local ``.pt`` path; by default the version's official checkpoint is fetched from the
    Hub repo ``xswu/HPSv2`` with ``downloader(repo_id, filename) -> path`` (``hf_hub_download``).
    ``tokenizer`` (path or Hub id) defaults to a ``tokenizer/`` folder beside a local checkpoint, else the
    CLIP BPE of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``. ``antialias=False`` reproduces torchvision < 0.17.
    """

    higher_is_better = True
    name = "hpsv2"

    def __init__(
        self,
        version: str = "v2.1",
        *,
        checkpoint: str | os.PathLike | None = None,
        device: str = "auto",
        batch_size: int = 16,
        antialias: bool = True,
        downloader: Callable[[str, str], str | os.PathLike] | None = None,
        tokenizer: str | os.PathLike | None = None,
    ):
        import torch

        self.version = _normalise_version(version)
        self.batch_size = check_batch_size(batch_size)
        self.antialias = bool(antialias)
        label = f"HPS {self.version} checkpoint"
        if checkpoint is None:
            filename = HPS_CHECKPOINTS[self.version]
            source = f"{HPS_REPO}/{filename}"
            try:
                path = Path((downloader or _default_downloader)(HPS_REPO, filename))
            except Exception as e:  # noqa: BLE001 - any download failure becomes one line
                raise ModelLoadError(f"cannot download {label} {source!r}: {first_line(e)}") from None
        else:
            path = Path(checkpoint).expanduser()
            source = str(path)
        if not path.is_file():
            raise ModelLoadError(f"cannot load {label} {source!r}: no such file")
        try:
            state_dict, model_cfg = load_openclip_state_dict(path)
        except Exception as e:  # noqa: BLE001 - corrupt archives raise many types
            raise ModelLoadError(f"cannot load {label} {source!r}: {first_line(e)}") from None

        tok_source = tokenizer
        if tok_source is None:
            beside = path.parent / "tokenizer"
            tok_source = beside if checkpoint is not None and beside.is_dir() else DEFAULT_TOKENIZER
        self.tokenizer = self._load_tokenizer(tok_source)
        self.tokenizer_source = str(tok_source)
        try:
            model = openclip_to_hf_clip(
                state_dict,
                model_cfg,
                bos_token_id=self.tokenizer.bos_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        except (ValueError, KeyError, RuntimeError) as e:
            raise ModelLoadError(f"cannot convert {label} {source!r}: {first_line(e)}") from None
        del state_dict
        if len(self.tokenizer) > model.config.text_config.vocab_size:
            raise ModelLoadError(
                f"tokenizer {self.tokenizer_source!r} has {len(self.tokenizer)} tokens but the checkpoint only "
                f"{model.config.text_config.vocab_size}"
            )
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.checkpoint = source
        self.checkpoint_path = path  # the file loaded (the Hub cache's copy for a download)
        self.image_size = int(model.config.vision_config.image_size)
        self.context_length = int(model.config.text_config.max_position_embeddings)
        self.embedding_dim = int(model.config.projection_dim)
        self.autocast = self.device.startswith("cuda")
        self.text_cleaning = text_cleaning_label()
        if not has_ftfy():
            warnings.warn(
                "ftfy is not installed: prompts are cleaned without ftfy.fix_text, so prompts with curly "
                "quotes, mojibake, ligatures or full-width characters score differently from hpsv2",
                stacklevel=2,
            )
        self._torch = torch

    @staticmethod
    def _load_tokenizer(source: str | os.PathLike):
        from transformers import CLIPTokenizer

        try:
            return CLIPTokenizer.from_pretrained(str(source))
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ModelLoadError(f"cannot load CLIP tokenizer {str(source)!r}: {first_line(e)}") from None

    # ------------------------------------------------------------------------------------------ metadata
    @property
    def info(self) -> dict[str, Any]:
        """What to record beside HPS numbers (v2.0 and v2.1 are not comparable; antialiasing moves scores)."""
        return {
            "metric": "hpsv2",
            "version": self.version,
            "checkpoint": self.checkpoint,
            "antialias": self.antialias,
            "text_cleaning": self.text_cleaning,
            "tokenizer": self.tokenizer_source,
            "precision": "fp16-autocast" if self.autocast else "fp32",
            "scale": "raw cosine; the HPS benchmark reports 100 x",
        }

    # ------------------------------------------------------------------------------------------ inputs
    def preprocess(self, images: Sequence[Any]):
        """Images -> normalised pixel batch ``(n, 3, 224, 224)`` (float32, CPU)."""
        torch = self._torch
        tensors = [preprocess_image(im, size=self.image_size, antialias=self.antialias) for im in images]
        if not tensors:
            return torch.zeros((0, 3, self.image_size, self.image_size))
        return torch.stack(tensors)

    def tokenize(self, texts: Sequence[str]):
        """Cleaned, CLIP-BPE-tokenised prompts: int64 ``(n, <=77)`` with start and end tokens."""
        cleaned = [clean_text(t) for t in texts]
        return self.tokenizer(
            cleaned, padding=True, truncation=True, max_length=self.context_length, return_tensors="pt"
        )["input_ids"]

    # ------------------------------------------------------------------------------------------ features
    def _autocast(self):
        import contextlib

        torch = self._torch
        if self.autocast:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _normalised(self, features) -> np.ndarray:
        torch = self._torch
        return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32)

    def image_features(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised image features ``(n, projection_dim)``, float32."""
        torch = self._torch
        rows = []
        for batch in batches(list(images), self.batch_size):
            pixels = self.preprocess(batch).to(self.device)
            with torch.inference_mode(), self._autocast():
                pooled = self.model.vision_model(pixel_values=pixels).pooler_output  # post-LN class token
                rows.append(self._normalised(self.model.visual_projection(pooled)))
        if not rows:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate(rows)

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text features ``(n, projection_dim)``, float32."""
        torch = self._torch
        rows = []
        for batch in batches(list(texts), self.batch_size):
            ids = self.tokenize(batch).to(self.device)
            with torch.inference_mode(), self._autocast():
                # Causal attention only (as OpenCLIP): tokens after the end token cannot change it.
                hidden = self.model.text_model(input_ids=ids).last_hidden_state  # after ln_final
                pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), ids.argmax(dim=-1)]
                rows.append(self._normalised(self.model.text_projection(pooled)))
        if not rows:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate(rows)

    # ------------------------------------------------------------------------------------------ scores
    def score(self, prompts: Sequence[str], images: Sequence[Any]) -> np.ndarray:
        """Per image the cosine of its features with its prompt's (float64); ``prompts[i]`` goes with
        ``images[i]``. HPS v2 as published = 100 x this."""
        prompts = list(prompts)
        images = list(images)
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images: give one prompt per image")
        if not images:
            return np.zeros(0, dtype=np.float64)
        unique = list(dict.fromkeys(prompts))
        text = self.text_features(unique).astype(np.float64)
        index = {p: i for i, p in enumerate(unique)}
        text_rows = text[[index[p] for p in prompts]]
        image = self.image_features(images).astype(np.float64)
        return np.einsum("ij,ij->i", image, text_rows)
