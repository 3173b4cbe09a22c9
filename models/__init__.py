"""Image -> prompt-embedding models: one trainer, many YAML configs; each run writes OOF artifacts."""
