"""Training with Lightning: the run sequence, tasks, strategies, callbacks, incremental updates."""
