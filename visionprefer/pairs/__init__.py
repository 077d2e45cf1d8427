"""Stage 4: pairwise preferences derived from the feedback."""
