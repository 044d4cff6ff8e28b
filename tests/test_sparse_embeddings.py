"""Sparse item tables: a training step's table gradient holds exactly the rows it read.

Expectations are independent of the code under test: the touched rows are listed from the
batch and the drawn negatives, and the values are the gradient the same model gives with a
dense table. Also: what sparse tables refuse, the popularity proposal drawn through its CDF,
the config checks and the memory estimate (bytes computed by hand).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from recmodels.bert4rec import BERT4Rec
from recmodels.losses import SampledSoftmax, make_loss, sequence_loss
from recmodels.sasrec import SASRec
from tests.helpers import tiny_config
from train.training.config_checks import ConfigError, check_config, check_memory_fit, training_memory_bytes

NUM_ITEMS, HIDDEN = 40, 8
ROWWISE = "model.task.optimizer._target_=train.training.optimizers.RowwiseAdam"


def pair(tied: bool) -> tuple[SASRec, SASRec]:
    """The same SASRec with a sparse and with a dense table (same weights)."""
    options = dict(hidden=HIDDEN, num_blocks=1, num_heads=1, max_len=6, dropout=0.0, tied_output=tied)
    torch.manual_seed(0)
    sparse = SASRec(NUM_ITEMS, sparse_embeddings=True, **options)
    dense = SASRec(NUM_ITEMS, **options)
    dense.load_state_dict(sparse.state_dict())
    return sparse, dense


def batch() -> dict[str, torch.Tensor]:
    history = torch.tensor([[-1, -1, 3, 7, 7, 2], [1, 4, 9, 4, 0, 5]])
    targets = torch.tensor([[-1, -1, 7, 7, 2, 11], [4, 9, 4, 0, 5, 12]])
    return {"history": history, "targets": targets}


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("name", ["sampled_softmax", "bce", "gbce"])
def test_sampled_losses_leave_sparse_gradients_on_exactly_the_touched_rows(name: str, tied: bool) -> None:
    sparse, dense = pair(tied)
    drawn: list[torch.Tensor] = []
    losses = []
    for model in (sparse, dense):
        loss = make_loss(name, NUM_ITEMS, num_negatives=5, generator=torch.Generator().manual_seed(3))
        original = loss.sample_negatives
        loss.sample_negatives = lambda *a, _f=original: drawn.append(_f(*a)) or drawn[-1]
        losses.append(sequence_loss(model, batch(), loss))
        losses[-1].backward()
    assert torch.equal(drawn[0], drawn[1])
    torch.testing.assert_close(losses[0], losses[1])
    b = batch()
    inputs = set(b["history"][b["history"] >= 0].tolist())
    outputs = set(b["targets"][b["targets"] >= 0].tolist()) | set(drawn[0].flatten().tolist())
    tables = {"item_emb.weight": inputs | outputs} if tied else {"item_emb.weight": inputs, "output_emb.weight": outputs}
    named = dict(dense.named_parameters())
    for name_, param in sparse.named_parameters():
        if name_ in tables:
            assert param.grad.is_sparse, name_
            rows = set(param.grad.coalesce().indices()[0].tolist())
            assert rows == tables[name_]
            torch.testing.assert_close(param.grad.to_dense(), named[name_].grad)
        else:
            assert not param.grad.is_sparse
            torch.testing.assert_close(param.grad, named[name_].grad)


def test_full_softmax_and_output_bias_are_refused_with_sparse_tables() -> None:
    sparse, _ = pair(tied=True)
    with pytest.raises(ValueError, match="sampled_softmax"):
        sequence_loss(sparse, batch(), make_loss("ce", NUM_ITEMS))
    with pytest.raises(ValueError, match="output_bias=false"):
        BERT4Rec(NUM_ITEMS, hidden=HIDDEN, sparse_embeddings=True)
    assert BERT4Rec(NUM_ITEMS, hidden=HIDDEN, output_bias=False, sparse_embeddings=True).item_emb.sparse


def test_popularity_proposal_draws_each_item_with_its_probability() -> None:
    counts = torch.tensor([0.0, 1.0, 4.0, 10.0, 25.0])
    loss = SampledSoftmax(5, num_negatives=200_000, proposal="popularity", item_counts=counts,
                          generator=torch.Generator().manual_seed(0))
    q = (counts + 1.0) / (counts + 1.0).sum()
    frequency = torch.bincount(loss.sample_negatives(torch.device("cpu")), minlength=5) / 200_000
    assert torch.allclose(frequency.double(), q.double(), atol=0.005)  # ~5 standard errors


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.task.loss.name=ce", ROWWISE], "loss.name=sampled_softmax"),
        (["model.task.loss.name=sampled_softmax"], "RowwiseAdam"),
        (["model.task.loss.name=sampled_softmax", ROWWISE, "trainer=deepspeed_zero2"], "trainer=ddp"),
        (["model.task.loss.name=sampled_softmax", ROWWISE, "trainer.gradient_clip_val=1.0"], "gradient_clip_val=null"),
    ],
)
def test_config_checks_name_the_fix(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(tiny_config(tmp_path, "model=sasrec", "model.net.sparse_embeddings=true", *overrides))


def test_memory_estimate_by_hand() -> None:
    # 1,000 rows x 16: 16,000 params. ZeRO-2 over 4 ranks: gradient and moments / 4.
    dense = training_memory_bytes(1_000, 16, num_items=998, loss="ce", score_rows=10, zero_stage=2, ranks=4)
    assert dense == {"table weights": 64_000, "table gradient": 16_000, "Adam moments": 32_000,
                     "loss scores": 12 * 10 * 998}
    sparse = training_memory_bytes(1_000, 16, num_items=998, loss="sampled_softmax", score_rows=10,
                                   num_negatives=7, sparse=True, touched_rows=50)
    assert sparse == {"table weights": 64_000, "table gradient": 4 * 50 * 16, "Adam moments": 128_000,
                      "loss scores": 12 * 10 * 8}


def test_memory_check_names_the_loss_that_fits(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model=sasrec", "model.net.hidden=16", "trainer.accelerator=cpu")
    with open_dict(cfg):
        cfg.model.net.num_items = 1_000_000
    # 1,000,002 rows x 16 x (4 + 4 + 8) B = 256 MB of table state, plus CE blocks of 128 rows.
    with pytest.raises(ConfigError, match="model.task.loss.name=sampled_softmax"):
        check_memory_fit(cfg, 60, available=200 * 2**20)
    check_memory_fit(cfg, 60, available=2 * 2**30)


@pytest.mark.slow
def test_training_with_sparse_tables_through_the_entry_point_resumes_exactly(tmp_path: Path) -> None:
    """Two epochs straight == one epoch, then resumed from last.ckpt for the second: the
    row-wise optimiser's moments, rules and step counts survive the checkpoint."""
    from train.training.run import train

    def config(folder: str, epochs: int, *extra: str):
        cfg = tiny_config(
            tmp_path / folder, "model=sasrec", "model.net.sparse_embeddings=true",
            "model.task.loss.name=sampled_softmax", "+model.task.loss.num_negatives=16", ROWWISE,
            "model.net.hidden=16", "model.net.num_blocks=1", "model.net.max_len=16",
            f"trainer.max_epochs={epochs}", "trainer.check_val_every_n_epoch=1", "callbacks.plots=null",
            "num_threads=1", *extra,
        )
        check_config(cfg)
        return cfg

    straight = train(config("straight", 2))
    assert straight["epochs"] == 2 and 0.0 <= straight["test/ndcg@10"] <= 1.0
    train(config("interrupted", 1))
    last = tmp_path / "interrupted" / "checkpoints" / "last.ckpt"
    resumed = train(config("interrupted", 2, f"ckpt_path={last}"))
    scores = lambda m: {k: v for k, v in m.items() if k.startswith(("val/", "test/"))}  # noqa: E731
    assert scores(resumed) == scores(straight)
