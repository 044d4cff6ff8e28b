"""Tiny trained runs and a local HTTP server for the inference, export, serving and
profile tests. Runs are trained in-process through ``train.training.run.train`` (a few seconds)."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from tests.helpers import tiny_config

QUICK = ["trainer.max_epochs=1", "eval.ks=[5,10]"]
SMALL_NETS = {
    "neumf": [],
    "pop": [],
    "sasrec": ["model.net.hidden=16", "model.net.num_blocks=1", "model.net.num_heads=2", "model.net.max_len=10"],
    "bert4rec": ["model.net.hidden=16", "model.net.num_blocks=1", "model.net.num_heads=2", "model.net.max_len=10"],
    "hstu": ["model.net.hidden=16", "model.net.num_blocks=1", "model.net.num_heads=2", "model.net.max_len=10",
             "model.task.loss.num_negatives=16"],
}


def trained_run(output_dir: Path, model: str = "neumf", *overrides: str) -> Path:
    """Train one epoch; the run must have written its artifacts itself (what infer, serve,
    export and profile load), so a training that stops writing them fails here."""
    from train.training.run import train

    cfg = tiny_config(output_dir, f"model={model}", *QUICK, *SMALL_NETS.get(model, []), *overrides)
    train(cfg)
    artifact = output_dir / "artifacts" / "artifact.json"
    assert artifact.is_file(), f"training did not write {artifact}"
    return output_dir


def randomise_(model: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Large random weights (padding rows kept zero): O(1), well-spread scores, so
    tolerances and orderings in a test mean something after a one-epoch run."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for param in module.parameters(recurse=False):
                param.copy_(torch.randn(param.shape, generator=generator) * std)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
    return model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free local port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
