"""BERT4Rec: the cloze setup hides targets, [MASK] scoring, item encoder hook, overfitting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data_modules import sequence_windows
from data_modules.interactions import Histories
from data_modules.sequence_windows import SequenceTrainingSet, masked_collate
from recmodels import bert4rec
from recmodels.bert4rec import BERT4Rec
from recmodels.item_encoder import ItemEncoder
from recmodels.losses import make_loss, sequence_loss

NUM_ITEMS = 30
MASK = bert4rec.MASK


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation (severe on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_model(**kw) -> BERT4Rec:
    torch.manual_seed(0)
    args = dict(hidden=16, num_blocks=2, num_heads=2, max_len=6, dropout=0.0)
    args.update(kw)
    model = BERT4Rec(NUM_ITEMS, **args).eval()
    if model.output_bias is not None:
        with torch.no_grad():
            model.output_bias.normal_()  # non-zero so that tests see the bias
    return model


def test_mask_token_agrees_between_model_and_collate() -> None:
    assert bert4rec.MASK == sequence_windows.MASK == -2


def test_score_all_scores_a_mask_appended_after_the_history() -> None:
    model = small_model()
    history = torch.tensor([[-1, -1, 3, 4], [5, 6, 7, 8]])
    context = {"history": history}
    scores = model.score_all(context)
    assert scores.shape == (2, NUM_ITEMS)
    with_mask = torch.tensor([[-1, -1, 3, 4, MASK], [5, 6, 7, 8, MASK]])
    last = model(with_mask)[:, -1]
    expected = last @ model.item_emb.weight[:NUM_ITEMS].T + model.output_bias
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(model.user_representation(context), last)
    cands = torch.tensor([[0, 29], [3, 3]])
    torch.testing.assert_close(model.score_candidates(context, cands), scores.gather(1, cands))


def test_full_length_history_drops_its_oldest_item_for_the_mask() -> None:
    model = small_model()
    full = torch.tensor([[1, 2, 3, 4, 5, 6]])  # max_len = 6
    expected = model(torch.tensor([[2, 3, 4, 5, 6, MASK]]))[:, -1]
    torch.testing.assert_close(model.user_representation({"history": full}), expected)


def test_bidirectional_context_and_padding_invariance() -> None:
    model = small_model()
    base = torch.tensor([[-1, -1, 3, MASK, 5, 6]])
    later_changed = torch.tensor([[-1, -1, 3, MASK, 5, 7]])
    assert not torch.allclose(model(base)[:, 3], model(later_changed)[:, 3])
    shorter = torch.tensor([[3, MASK, 5, 6]])
    torch.testing.assert_close(model(base)[:, 2:], model(shorter))
    assert (model(base)[:, :2] == 0).all()


def test_masked_position_never_reveals_the_original_item() -> None:
    """Changing the original item at a masked position changes the target, not the outputs."""

    def collate_one(items: np.ndarray) -> dict[str, torch.Tensor]:
        data = SequenceTrainingSet(Histories(indptr=np.array([0, len(items)]), items=items), max_len=7)
        collate = masked_collate(0.4, generator=torch.Generator().manual_seed(3))
        return collate(data.__getitems__([0]))

    items = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    batch = collate_one(items)
    masked = (batch["history"][0] == MASK).nonzero().squeeze(1)
    assert len(masked) > 0
    position = int(masked[0])
    altered = items.copy()
    altered[1 + position] = 29  # the window's history starts at the second item
    batch2 = collate_one(altered)
    assert int(batch2["targets"][0, position]) == 29 != int(batch["targets"][0, position])
    assert torch.equal(batch2["history"], batch["history"])
    model = small_model(max_len=7)
    torch.testing.assert_close(model(batch2["history"]), model(batch["history"]))


def test_item_encoder_path_uses_a_learned_mask_vector() -> None:
    torch.manual_seed(0)
    tags = torch.randint(-1, 4, (NUM_ITEMS, 3))
    encoder = ItemEncoder(NUM_ITEMS, 16, {"tag": (4, True)}, categorical_values={"tag": tags})
    model = BERT4Rec(NUM_ITEMS, hidden=16, max_len=6, dropout=0.0, item_encoder=encoder).eval()
    assert model.item_emb is None and model.mask_emb is not None
    context = {"history": torch.tensor([[-1, 2, 3], [4, 5, 6]])}
    scores = model.score_all(context)
    expected = model.user_representation(context) @ encoder.table().T + model.output_bias
    torch.testing.assert_close(scores, expected)
    embedded = model._input_embeddings(torch.tensor([[-1, MASK, 2]]))
    assert (embedded[0, 0] == 0).all()
    torch.testing.assert_close(embedded[0, 1], model.mask_emb)
    torch.testing.assert_close(embedded[0, 2], encoder(torch.tensor(2)))


def test_overfits_a_tiny_dataset() -> None:
    torch.manual_seed(0)
    num_users, length = 20, 10
    users = np.arange(num_users)
    steps = 1 + users % 3
    items = ((5 * users)[:, None] + steps[:, None] * np.arange(length)[None, :]) % NUM_ITEMS
    histories = Histories(indptr=np.arange(num_users + 1) * length, items=items.reshape(-1))
    data = SequenceTrainingSet(histories, max_len=length)
    collate = masked_collate(0.3, generator=torch.Generator().manual_seed(0), last_item_prob=0.5)
    model = BERT4Rec(
        NUM_ITEMS, hidden=32, num_blocks=2, num_heads=2, max_len=length, dropout=0.0, pre_ln=True
    )
    loss = make_loss("ce", NUM_ITEMS)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    everyone = list(range(len(data)))
    for _ in range(200):
        opt.zero_grad()
        sequence_loss(model, collate(data.__getitems__(everyone)), loss).backward()
        opt.step()
    model.eval()
    # Next-item prediction: the first length-1 items as history, the last one as target.
    with torch.no_grad():
        scores = model.score_all({"history": torch.as_tensor(items[:, :-1])})
    accuracy = (scores.argmax(1).numpy() == items[:, -1]).mean()
    assert accuracy >= 0.95
