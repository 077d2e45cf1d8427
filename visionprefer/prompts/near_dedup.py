"""Near-duplicate prompt removal: greedy in prompt order, a prompt is dropped when its embedding cosine to
an earlier kept prompt reaches the threshold (AGFSync used 0.9)."""

from __future__ import annotations

from typing import Any

from ..config import NearDedupConfig

BLOCK = 1024


def greedy_near_duplicates(emb, threshold: float) -> dict[int, tuple[int, float]]:
    """Index -> (index of the kept prompt it duplicates, cosine), for rows of L2-normalised ``emb``.

    Blocks of rows are compared with all kept rows in one matrix product, then resolved in order inside
    the block, so the result equals the plain sequential greedy pass.
    """
    import numpy as np

    n = emb.shape[0]
    kept: list[int] = []
    dropped: dict[int, tuple[int, float]] = {}
    for start in range(0, n, BLOCK):
        block = emb[start : start + BLOCK]
        prior = block @ emb[kept].T if kept else np.zeros((len(block), 0), dtype=emb.dtype)
        inner = block @ block.T
        block_kept: list[int] = []
        for i in range(len(block)):
            best_j, best = -1, -2.0
            if prior.shape[1]:
                j = int(np.argmax(prior[i]))
                best_j, best = kept[j], float(prior[i, j])
            if block_kept:
                local = inner[i, block_kept]
                j = int(np.argmax(local))
                if float(local[j]) > best:
                    best_j, best = start + block_kept[j], float(local[j])
            if best >= threshold:
                dropped[start + i] = (best_j, best)
            else:
                block_kept.append(i)
        kept.extend(start + i for i in block_kept)
    return dropped


def drop_near_duplicates(
    records: list[dict[str, Any]], cfg: NearDedupConfig
) -> tuple[list[dict], list[dict]]:
    from ..models.text_embed import SentenceEmbedder

    if len(records) < 2:
        return records, []
    embedder = SentenceEmbedder(cfg.model, device=cfg.device, batch_size=cfg.batch_size)
    emb = embedder.encode([r["prompt"] for r in records])
    dropped = greedy_near_duplicates(emb, cfg.threshold)
    kept = [r for i, r in enumerate(records) if i not in dropped]
    rejected = []
    for i, (j, cos) in sorted(dropped.items()):
        r = records[i]
        rejected.append(
            {
                "source": r["source"],
                "source_index": r["source_index"],
                "original": r["original"],
                "length": len(r["original"]),
                "prompt_id": r["prompt_id"],
                "kind": "filtered",
                "stage": "near_dedup",
                "reason": f"near-duplicate of {records[j]['prompt_id']} (cosine {cos:.3f})",
            }
        )
    return kept, rejected
