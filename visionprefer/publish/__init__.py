"""Stage 5: the Hugging Face dataset folder, its card and the Diffusion-DPO export; `push` to the Hub."""
