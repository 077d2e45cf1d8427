"""Evaluators: TIFA, HPS v2, CLIP/aesthetic/PickScore scores and win rates on generated or existing images."""
