"""The model card (README.md) of a trained reward model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import RewardConfig


def _public(name: str) -> str:
    """A Hub id as it is; a local path reduced to its folder name (no absolute path in a card)."""
    p = Path(name)
    return p.name if p.is_absolute() or p.exists() else name


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def model_card(cfg: RewardConfig, data: Any, result: dict[str, Any]) -> str:
    import yaml

    base, dataset = _public(cfg.base_model), _public(cfg.dataset)
    header = {
        "library_name": "transformers",
        "pipeline_tag": "zero-shot-image-classification",
        "tags": ["visionprefer", "reward-model", "text-to-image", "preference", "clip"],
        "base_model": base,
        "datasets": [dataset],
    }
    config = {k: v for k, v in cfg.to_dict().items() if k != "output_dir"}
    config["dataset"], config["base_model"] = dataset, base
    sizes = result["sizes"]
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        f"# Reward model: {base} fine-tuned on {dataset} ({cfg.aspect})",
        "",
        "A PickScore/HPS-style preference model trained with `visionprefer train-reward`: the score of an image "
        "for a prompt is `logit_scale · cos(image embedding, text embedding)`, trained with the pairwise "
        "cross-entropy of the two images' scores against the dataset's `label_0` (ties as 0.5).",
        "",
        "| | |",
        "|---|---|",
        f"| data | `{dataset}`, config `pairs`, aspect `{cfg.aspect}` |",
        f"| train pairs | {sizes['train']} ({data.train_prompts} prompts) |",
        f"| validation pairs | {sizes['validation']} ({data.validation_prompts} prompts; {result['validation_source']}) |",
        f"| optimizer steps | {result['steps']} × {cfg.batch_size} pairs |",
        f"| validation accuracy before training | {_pct(result['validation_accuracy_before'])} |",
        f"| validation accuracy (selected step {result['best_step']}) | {_pct(result['validation_accuracy'])} |",
        "",
        "Accuracy counts the pairs that are not ties; an equal score counts half.",
        "",
        "## Use",
        "",
        "```python",
        "import torch",
        "from transformers import AutoModel, AutoProcessor",
        "",
        'model, processor = AutoModel.from_pretrained("MODEL_DIR"), AutoProcessor.from_pretrained("MODEL_DIR")',
        'inputs = processor(text=[prompt], images=images, return_tensors="pt", padding=True)',
        "with torch.no_grad():",
        "    out = model(**inputs)",
        "scores = out.logits_per_text[0]  # logit_scale · cosine, one per image",
        "```",
        "",
        "## Training config",
        "",
        "```yaml",
        yaml.safe_dump({"reward": config}, sort_keys=False).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)
