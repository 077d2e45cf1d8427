"""Stage 3: feedback for every image — the VLM judge (four aspects with explanations) or metric scorers."""
