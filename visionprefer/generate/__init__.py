"""Stage 2: images from diffusers models at several guidance scales, in fixed chunks of the plan."""
