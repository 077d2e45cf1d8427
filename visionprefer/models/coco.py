"""COCO detection labels as HF detectors number them, and the tiny random-weight YOLOS detector.

Model definitions live in ``visionprefer.models`` so that the tiny-model factory builds them without
importing the scorers that use them (scorers depend on models, never the reverse).
"""

from __future__ import annotations

from pathlib import Path

from ..scorers.questions import COCO_CLASSES

_COCO_UNUSED_IDS = frozenset({0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83})


def coco_id2label() -> dict[int, str]:
    """The 91-entry ``id2label`` of HF COCO detectors (``hustvl/yolos-tiny``): "N/A" at the unused ids."""
    names = iter(COCO_CLASSES)
    return {i: "N/A" if i in _COCO_UNUSED_IDS else next(names) for i in range(91)}


def build_tiny_detector(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a random-weight YOLOS detector (32-dim, 2 layers, 10 detection tokens, COCO ``id2label``) and its
    image processor (images resized to a 32-64 px side) to ``folder``, loadable with ``from_pretrained``."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection

    folder = Path(folder)
    id2label = coco_id2label()
    config = YolosConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=[32, 32],
        patch_size=8,
        num_detection_tokens=10,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items() if v != "N/A"},
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = YolosForObjectDetection(config)
    model.save_pretrained(folder)
    try:  # the PIL backend: the torchvision one is not a dependency
        from transformers.models.yolos.image_processing_pil_yolos import YolosImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - transformers releases before the backend split
        from transformers import YolosImageProcessor as Processor
    Processor(size={"shortest_edge": 32, "longest_edge": 64}).save_pretrained(folder)
    return folder
