"""SASRec: scoring API, padding/truncation semantics, item encoder hook, overfitting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data_modules.interactions import Histories
from data_modules.sequence_windows import SequenceTrainingSet, causal_collate
from recmodels.item_encoder import ItemEncoder
from recmodels.losses import make_loss, sequence_loss
from recmodels.sasrec import SASRec

NUM_ITEMS = 40


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation (severe on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_model(**kw) -> SASRec:
    torch.manual_seed(0)
    args = dict(hidden=16, num_blocks=2, num_heads=2, max_len=8, dropout=0.0)
    args.update(kw)
    return SASRec(NUM_ITEMS, **args).eval()


def test_shapes_and_scoring_api_agree() -> None:
    model = small_model()
    history = torch.tensor([[-1, -1, 3, 4, 5], [1, 2, 3, 4, 5], [-1, -1, -1, -1, 7]])
    context = {"user": torch.arange(3), "history": history}
    hidden = model(history)
    assert hidden.shape == (3, 5, 16)
    scores = model.score_all(context)
    assert scores.shape == (3, NUM_ITEMS)  # the padding row is not an item
    rep = model.user_representation(context)
    torch.testing.assert_close(rep, hidden[:, -1])
    torch.testing.assert_close(scores, rep @ model.item_emb.weight[:NUM_ITEMS].T)
    candidates = torch.tensor([[0, 39, 5], [7, 7, 1], [2, 3, 4]])
    torch.testing.assert_close(model.score_candidates(context, candidates), scores.gather(1, candidates))


def test_extra_left_padding_and_truncation_do_not_change_scores() -> None:
    model = small_model()
    short = torch.tensor([[-1, 3, 4, 5]])
    padded = torch.tensor([[-1, -1, -1, -1, -1, 3, 4, 5]])
    torch.testing.assert_close(model.score_all({"history": short}), model.score_all({"history": padded}))
    long = torch.tensor([list(range(12))])  # longer than max_len=8: only the last 8 count
    torch.testing.assert_close(
        model.score_all({"history": long}), model.score_all({"history": long[:, -8:]})
    )
    assert model(long).shape == (1, 8, 16)


def test_scale_embeddings_flag_changes_the_input_scale() -> None:
    plain, scaled = small_model(), small_model(scale_embeddings=True)
    history = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(scaled._input_embeddings(history), plain._input_embeddings(history) * 4.0)


def test_pad_row_has_zero_vector_and_no_gradient() -> None:
    model = small_model().train()
    history = torch.tensor([[-1, -1, 1, 2], [-1, 3, 4, 5]])
    model(history).sum().backward()
    assert (model.item_emb.weight[NUM_ITEMS] == 0).all()
    assert (model.item_emb.weight.grad[NUM_ITEMS] == 0).all()


def encoder_with_features() -> ItemEncoder:
    genres = torch.full((NUM_ITEMS, 2), -1, dtype=torch.long)
    genres[:, 0] = torch.arange(NUM_ITEMS) % 5
    genres[::3, 1] = 4
    year = torch.arange(NUM_ITEMS) % 7
    numeric = torch.linspace(0, 1, NUM_ITEMS)[:, None]
    return ItemEncoder(
        NUM_ITEMS, 16, {"genre": (5, True), "year": (7, False)}, numeric_dim=1,
        categorical_values={"genre": genres, "year": year}, numeric_values=numeric,
    )


def test_item_encoder_supplies_input_and_output_vectors() -> None:
    torch.manual_seed(0)
    model = SASRec(NUM_ITEMS, hidden=16, max_len=8, dropout=0.0, item_encoder=encoder_with_features()).eval()
    assert model.item_emb is None
    history = torch.tensor([[-1, 2, 3], [4, 5, 6]])
    context = {"history": history}
    scores = model.score_all(context)
    torch.testing.assert_close(scores, model.user_representation(context) @ model.item_encoder.table().T)
    cands = torch.tensor([[1, 2], [3, 39]])
    torch.testing.assert_close(model.score_candidates(context, cands), scores.gather(1, cands))
    # A feature change moves the scores of the items carrying it.
    with torch.no_grad():
        model.item_encoder.embeddings["year"].weight[1] += torch.randn(16)  # year 1: items 1, 8, 15, ...
    changed = model.score_all(context)
    assert not torch.allclose(changed[:, 1], scores[:, 1])
    torch.testing.assert_close(changed[:, 2], scores[:, 2])


def test_item_encoder_of_wrong_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="same sizes"):
        SASRec(NUM_ITEMS + 1, hidden=16, item_encoder=encoder_with_features())


def cyclic_histories(num_users: int = 20, length: int = 12) -> Histories:
    """User u walks the catalogue with its own step, so the next item needs two items of context."""
    users = np.arange(num_users)
    steps = 1 + users % 4
    starts = (7 * users) % NUM_ITEMS
    items = (starts[:, None] + steps[:, None] * np.arange(length)[None, :]) % NUM_ITEMS
    indptr = np.arange(num_users + 1) * length
    return Histories(indptr=indptr.astype(np.int64), items=items.reshape(-1).astype(np.int64))


@pytest.mark.parametrize("loss_name", ["ce", "bce"])
def test_overfits_a_tiny_dataset(loss_name: str) -> None:
    torch.manual_seed(0)
    data = SequenceTrainingSet(cyclic_histories(), max_len=11)
    batch = causal_collate(data.__getitems__(list(range(len(data)))))
    model = SASRec(NUM_ITEMS, hidden=32, num_blocks=2, num_heads=2, max_len=11, dropout=0.0)
    kw = {"num_negatives": 8} if loss_name == "bce" else {}
    loss = make_loss(loss_name, NUM_ITEMS, **kw)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150 if loss_name == "ce" else 250):
        opt.zero_grad()
        sequence_loss(model, batch, loss).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        predicted = (model(batch["history"]) @ model.item_table().T).argmax(-1)
    # From the second item on, (previous, current) determine the next item exactly.
    targets = batch["targets"][:, 1:]
    accuracy = (predicted[:, 1:] == targets)[targets >= 0].float().mean().item()
    assert accuracy > 0.95


def test_untied_output_scores_against_its_own_table_and_trains_both() -> None:
    model = small_model(tied_output=False)
    history = torch.tensor([[-1, 2, 3, 4], [5, 6, 7, 8]])
    context = {"user": torch.arange(2), "history": history}
    last = model(history)[:, -1]
    # Independent expectation: dot products with the separate table, not the input one.
    assert torch.allclose(model.score_all(context), last @ model.output_emb.weight.T, atol=1e-6)
    assert not torch.allclose(model.score_all(context), last @ model.item_emb.weight[:NUM_ITEMS].T, atol=1e-3)
    candidates = torch.tensor([[0, 9, 39], [1, 2, 3]])
    assert torch.allclose(
        model.score_candidates(context, candidates), model.score_all(context).gather(1, candidates), atol=1e-6
    )
    # Training reaches both tables: input rows seen in histories, output rows scored by the loss.
    model.train()
    batch = {"history": torch.tensor([[1, 2, 3]]), "targets": torch.tensor([[2, 3, 4]])}
    sequence_loss(model, batch, make_loss("ce", NUM_ITEMS)).backward()
    assert model.output_emb.weight.grad.abs().sum() > 0
    assert model.item_emb.weight.grad[[1, 2, 3]].abs().sum() > 0
    assert model.item_emb.weight.grad[[10, 20]].abs().sum() == 0  # never an input, and not an output
