"""Training engine (Lightning), checkpoints and batched inference."""
