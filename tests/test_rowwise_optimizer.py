"""RowwiseAdam: lazy Adam on sparse gradients, torch's Adam on dense ones, one state_dict.

The expectation for the sparse rule is SparseAdam's definition written out by hand (moments
and bias correction per touched row, every other row untouched); for dense parameters it is
a separate torch.optim.Adam on a copy. Under DDP (2 CPU processes, gloo) the ranks must end
with the same weights: the step a single process takes with the hand-averaged gradients.
"""
from __future__ import annotations

import copy
import io
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from train.training.optimizers import RowwiseAdam

LR, BETAS, EPS = 0.05, (0.8, 0.9), 1e-6


class Tiny(nn.Module):
    """A sparse table and a dense layer: the two kinds of parameter RowwiseAdam separates."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(8, 3, sparse=True)
        self.dense = nn.Linear(3, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dense(self.table(ids)).pow(2).mean()


def backward(model: Tiny, ids: list[int]) -> None:
    model.zero_grad(set_to_none=True)
    model(torch.tensor(ids)).backward()


def test_sparse_rows_follow_lazy_adam_and_dense_params_follow_adam() -> None:
    model, reference = Tiny(), Tiny()
    opt = RowwiseAdam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    dense_opt = torch.optim.Adam(reference.dense.parameters(), lr=LR, betas=BETAS, eps=EPS)
    weights = model.table.weight.detach().clone()
    m, v = torch.zeros_like(weights), torch.zeros_like(weights)
    for step, ids in enumerate([[1, 2, 2], [2, 5]], start=1):
        backward(model, ids)
        with torch.no_grad():  # the reference's dense layer sees the same table rows
            reference.table.weight.copy_(model.table.weight)
        backward(reference, ids)
        grad = model.table.weight.grad
        assert grad.is_sparse
        grad = grad.to_dense()
        rows = sorted(set(ids))
        before = weights.clone()
        b1, b2 = BETAS
        m[rows] = b1 * m[rows] + (1 - b1) * grad[rows]
        v[rows] = b2 * v[rows] + (1 - b2) * grad[rows] ** 2
        size = LR * (1 - b2**step) ** 0.5 / (1 - b1**step)
        weights[rows] -= size * m[rows] / (v[rows].sqrt() + EPS)
        opt.step()
        dense_opt.step()
        torch.testing.assert_close(model.table.weight.detach(), weights)
        state = opt.state[model.table.weight]
        torch.testing.assert_close(state["exp_avg"], m)
        torch.testing.assert_close(state["exp_avg_sq"], v)
        untouched = [r for r in range(8) if r not in rows]
        assert torch.equal(model.table.weight.detach()[untouched], before[untouched])
        for mine, theirs in zip(model.dense.parameters(), reference.dense.parameters()):
            torch.testing.assert_close(mine.detach(), theirs.detach())
    assert opt.state_dict()["layout"] == {"0": "rowwise", "1": "dense", "2": "dense"}


def saved(state: dict) -> dict:
    """A state dict after torch.save / torch.load(weights_only=True), as checkpoints are read."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_round_trip_continues_identically() -> None:
    model = Tiny()
    opt = RowwiseAdam(model.parameters(), lr=LR, betas=BETAS)
    for ids in ([0, 3], [3, 4]):
        backward(model, ids)
        opt.step()
    resumed = copy.deepcopy(model)
    resumed_opt = RowwiseAdam(resumed.parameters(), lr=LR, betas=BETAS)
    resumed_opt.load_state_dict(saved(opt.state_dict()))
    for ids in ([4, 6], [0, 6, 7]):
        for m, o in ((model, opt), (resumed, resumed_opt)):
            backward(m, ids)
            o.step()
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_lr_scheduler_reaches_both_rules() -> None:
    model = Tiny()
    opt = RowwiseAdam(model.parameters(), lr=LR)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.0)  # lr 0: nothing may move
    before = [p.detach().clone() for p in model.parameters()]
    backward(model, [1, 2])
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_gradient_layout_change_is_refused() -> None:
    table = nn.Parameter(torch.ones(4, 2))
    opt = RowwiseAdam([table])
    table.grad = torch.ones(4, 2).to_sparse()
    opt.step()
    table.grad = torch.ones(4, 2)
    with pytest.raises(RuntimeError, match="sparse_embeddings with a sampled loss"):
        opt.step()


def test_foreign_state_is_refused() -> None:
    model = Tiny()
    adam = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="not written by RowwiseAdam"):
        RowwiseAdam(model.parameters()).load_state_dict(adam.state_dict())


# -- DDP: sparse gradients all-reduced over gloo ----------------------------------------------
BATCHES = ([0, 1, 1, 5], [1, 2, 6, 6])  # rank r trains on BATCHES[r]; row 1 is shared


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = nn.parallel.DistributedDataParallel(Tiny())
        opt = RowwiseAdam(model.parameters(), lr=LR, betas=BETAS)
        opt.zero_grad()
        model(torch.tensor(BATCHES[rank])).backward()
        opt.step()
        torch.save(model.module.state_dict(), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ddp_ranks_apply_the_averaged_sparse_gradient(tmp_path: Path) -> None:
    mp.start_processes(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # Independent expectation: each rank's gradient computed here, averaged by hand, one step.
    grads = []
    for ids in BATCHES:
        model = Tiny()
        backward(model, ids)
        grads.append({n: p.grad.to_dense() for n, p in model.named_parameters()})
    expected = Tiny()
    for name, param in expected.named_parameters():
        mean = (grads[0][name] + grads[1][name]) / 2
        param.grad = mean.to_sparse() if name == "table.weight" else mean
    RowwiseAdam(expected.parameters(), lr=LR, betas=BETAS).step()
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0][name], value)
    fresh = Tiny().table.weight.detach()
    assert torch.equal(ranks[0]["table.weight"][[3, 4, 7]], fresh[[3, 4, 7]])  # no rank touched them
