"""ItemEncoder: fused item vectors from id + categorical (single/multi) + numeric features."""
from __future__ import annotations

import pytest
import torch

from recmodels.item_encoder import ItemEncoder

NUM_ITEMS, DIM = 5, 3
GENRES = torch.tensor([[0, 2, -1], [1, -1, -1], [-1, -1, -1], [2, 2, 0], [3, 1, 2]])
YEAR = torch.tensor([0, 1, 1, -1, 2])
NUMERIC = torch.tensor([[0.5, 1.0], [0.0, 0.0], [1.0, -1.0], [2.0, 0.0], [0.0, 3.0]])


def build(fusion: str) -> ItemEncoder:
    torch.manual_seed(0)
    return ItemEncoder(
        NUM_ITEMS, DIM, {"genre": (4, True), "year": (3, False)}, numeric_dim=2, fusion=fusion,
        categorical_values={"genre": GENRES, "year": YEAR}, numeric_values=NUMERIC,
    )


def expected_parts(enc: ItemEncoder, item: int) -> list[torch.Tensor]:
    genre_rows = [enc.embeddings["genre"].weight[g] for g in GENRES[item].tolist() if g >= 0]
    genre = torch.stack(genre_rows).mean(0) if genre_rows else torch.zeros(DIM)
    year = enc.embeddings["year"].weight[YEAR[item]] if YEAR[item] >= 0 else torch.zeros(DIM)
    numeric = enc.numeric.weight @ NUMERIC[item] + enc.numeric.bias
    # Parts in the encoder's order: id, features by name (genre, year), numeric.
    return [enc.id_emb.weight[item], genre, year, numeric]


def test_sum_fusion_matches_hand_computation() -> None:
    enc = build("sum")
    with torch.no_grad():
        table = enc.table()
        for item in range(NUM_ITEMS):
            torch.testing.assert_close(table[item], sum(expected_parts(enc, item)))


def test_concat_fusion_projects_the_concatenation() -> None:
    enc = build("concat")
    with torch.no_grad():
        for item in range(NUM_ITEMS):
            expected = enc.project(torch.cat(expected_parts(enc, item)))
            torch.testing.assert_close(enc(torch.tensor(item)), expected)


def test_lookup_shapes_and_large_batches_agree_with_table() -> None:
    enc = build("sum")
    ids = torch.tensor([[4, 0, 2], [1, 1, 3]])
    with torch.no_grad():
        assert enc(ids).shape == (2, 3, DIM)
        torch.testing.assert_close(enc(ids), enc.table()[ids])
        many = torch.randint(0, NUM_ITEMS, (4, 10))  # more ids than items: table-then-index path
        torch.testing.assert_close(enc(many), enc.table()[many])


def test_feature_values_travel_with_the_module_state() -> None:
    enc = build("sum")
    names = set(enc.state_dict())
    assert {"values_genre", "values_year", "numeric_values"} <= names


def test_bad_inputs_are_rejected_with_clear_messages() -> None:
    with pytest.raises(ValueError, match="fusion"):
        ItemEncoder(NUM_ITEMS, DIM, fusion="mean")
    with pytest.raises(ValueError, match="same features"):
        ItemEncoder(NUM_ITEMS, DIM, {"genre": (4, True)}, categorical_values={})
    with pytest.raises(ValueError, match="lie in 0..3"):
        ItemEncoder(NUM_ITEMS, DIM, {"genre": (4, True)}, categorical_values={"genre": GENRES + 1})
    with pytest.raises(ValueError, match=r"\[num_items\]"):
        ItemEncoder(NUM_ITEMS, DIM, {"year": (3, False)}, categorical_values={"year": YEAR[:3]})
    with pytest.raises(ValueError, match="numeric_values"):
        ItemEncoder(NUM_ITEMS, DIM, numeric_dim=3, numeric_values=NUMERIC)
