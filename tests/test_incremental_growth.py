"""Growing a model's id tables keeps every old row bit for bit and its old scores."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from recmodels.bert4rec import BERT4Rec
from recmodels.item_encoder import ItemEncoder
from recmodels.ncf import GMF, MLP, NeuMF
from recmodels.sasrec import SASRec

USERS, ITEMS, NEW_USERS, NEW_ITEMS = 7, 9, 11, 14


def randomised(model: nn.Module) -> nn.Module:
    """Large random weights, padding rows kept zero: scores and rows are distinctive."""
    with torch.no_grad():
        for module in model.modules():
            for param in module.parameters(recurse=False):
                param.normal_(0.0, 0.5)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
    return model.eval()


MODELS = {
    "gmf": lambda: GMF(USERS, ITEMS, embed_dim=4),
    "mlp": lambda: MLP(USERS, ITEMS, embed_dim=4, layers=[8, 4]),
    "neumf": lambda: NeuMF(USERS, ITEMS, mf_dim=4, mlp_embed_dim=4, layers=[8, 4]),
    "sasrec": lambda: SASRec(ITEMS, hidden=8, num_blocks=1, num_heads=2, max_len=5, dropout=0.0),
    "sasrec_untied": lambda: SASRec(ITEMS, hidden=8, num_blocks=1, num_heads=2, max_len=5, tied_output=False),
    "bert4rec": lambda: BERT4Rec(ITEMS, hidden=8, num_blocks=1, num_heads=2, max_len=5, dropout=0.0),
    "bert4rec_nobias": lambda: BERT4Rec(ITEMS, hidden=8, num_blocks=1, num_heads=2, max_len=5, output_bias=False),
}


def grow(model: nn.Module):
    if isinstance(model, (SASRec, BERT4Rec)):
        return model.grow(num_items=NEW_ITEMS)
    return model.grow(num_users=NEW_USERS, num_items=NEW_ITEMS)


def context() -> dict[str, torch.Tensor]:
    """Old users and left-padded histories of old items (some fully padded but one)."""
    history = torch.tensor([[-1, -1, 0, 3, 8], [-1, -1, -1, -1, 5], [1, 2, 3, 4, 6]])
    return {"user": torch.tensor([0, 3, USERS - 1]), "history": history}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_old_rows_are_bit_identical_and_specials_move_to_the_end(name: str) -> None:
    model = randomised(MODELS[name]())
    before = copy.deepcopy(model.state_dict())
    rows = grow(model)
    after = model.state_dict()
    assert rows, "a grown model names the rows it kept"
    for key, positions in rows.items():
        assert torch.equal(after[key][positions], before[key]), key  # bit for bit
    for key, value in before.items():  # everything that is not an id table is untouched
        if key not in rows:
            assert torch.equal(after[key], value), key
    assert model.num_items == NEW_ITEMS
    if isinstance(model, (SASRec, BERT4Rec)):
        table = after["item_emb.weight"]
        specials = 1 if isinstance(model, SASRec) else 2
        assert table.shape[0] == NEW_ITEMS + specials
        # Hand-computed positions: real rows 0..8 stay, pad (old 9) -> 14, [MASK] (old 10) -> 15.
        assert rows["item_emb.weight"].tolist() == [*range(ITEMS), *range(NEW_ITEMS, NEW_ITEMS + specials)]
        assert model.pad_row == NEW_ITEMS and model.item_emb.padding_idx == NEW_ITEMS
        assert torch.count_nonzero(table[NEW_ITEMS]) == 0  # padding stays zero
        if isinstance(model, BERT4Rec):
            assert model.mask_row == NEW_ITEMS + 1
            assert torch.equal(table[NEW_ITEMS + 1], before["item_emb.weight"][ITEMS + 1])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_grown_model_scores_old_users_and_items_as_before(name: str) -> None:
    model = randomised(MODELS[name]())
    with torch.no_grad():
        old_scores = model.score_all(context())
        grow(model)
        new_scores = model.score_all(context())
    assert new_scores.shape == (3, NEW_ITEMS)
    # Weights are bit-identical (above); a wider matmul may round differently in the last bit.
    torch.testing.assert_close(new_scores[:, :ITEMS], old_scores, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["neumf", "sasrec", "bert4rec"])
def test_new_rows_are_drawn_like_a_fresh_model(name: str) -> None:
    """Many new rows: their spread matches a freshly built model's rows of the same table."""
    small = MODELS[name]()
    big = 3000
    if isinstance(small, (SASRec, BERT4Rec)):
        rows = small.grow(num_items=big)
        fresh = type(small)(big, hidden=8, num_blocks=1, num_heads=2, max_len=5)
    else:
        rows = small.grow(num_users=big, num_items=big)
        fresh = NeuMF(big, big, mf_dim=4, mlp_embed_dim=4, layers=[8, 4])
    grown, reference = small.state_dict(), fresh.state_dict()
    for key, kept in rows.items():
        new = torch.ones(grown[key].shape[0], dtype=torch.bool)
        new[kept] = False
        if key == "output_bias":
            assert torch.count_nonzero(grown[key][new]) == 0  # fresh biases are zero
            continue
        got, want = grown[key][new].std().item(), reference[key][:big].std().item()
        assert got == pytest.approx(want, rel=0.1), key


@pytest.mark.parametrize("name", ["gmf", "sasrec"])
def test_shrinking_is_refused(name: str) -> None:
    model = MODELS[name]()
    with pytest.raises(ValueError, match="cannot grow items from 9 to 5"):
        model.grow(num_items=5) if name == "sasrec" else model.grow(num_users=USERS, num_items=5)


def test_feature_built_items_cannot_grow() -> None:
    encoder = ItemEncoder(ITEMS, 8)
    model = SASRec(ITEMS, hidden=8, num_blocks=1, num_heads=2, max_len=5, item_encoder=encoder)
    with pytest.raises(ValueError, match="item encoder"):
        model.grow(num_items=NEW_ITEMS)
