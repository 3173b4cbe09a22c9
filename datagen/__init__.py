"""Data to train on: the procedural demo dataset (demo/), the prompt corpus builder (prompts/) and
Stable Diffusion 2 image generation (generate/)."""
