"""A run folder as data: artifacts, checkpoints, DeepSpeed consolidation, metrics.json."""
