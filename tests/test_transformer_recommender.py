"""The shared sequence-model base keeps parameter names and order of SASRec and BERT4Rec.

Names are what checkpoints load by; the order is what optimizer states in checkpoints
are indexed by, so both are pinned here for every item-side variant.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from recmodels.bert4rec import BERT4Rec
from recmodels.feature_tensors import FeatureTensors
from recmodels.sasrec import SASRec
from recmodels.transformer_recommender import TransformerRecommender

ITEMS = 9


def features() -> FeatureTensors:
    return FeatureTensors(
        num_rows=ITEMS, categorical={"kind": torch.arange(ITEMS) % 3}, cardinalities={"kind": 3},
        multi_valued={"kind": False},
    )


SMALL = {"hidden": 8, "num_blocks": 1, "num_heads": 2, "max_len": 4}
# Leading parameter groups (before the encoder), in order.
CASES: dict[str, tuple[Callable[[], TransformerRecommender], list[str]]] = {
    "sasrec": (lambda: SASRec(ITEMS, **SMALL), ["item_emb.weight"]),
    "sasrec_untied": (lambda: SASRec(ITEMS, tied_output=False, **SMALL), ["item_emb.weight", "output_emb.weight"]),
    "sasrec_features": (lambda: SASRec(ITEMS, item_features=features(), **SMALL), ["item_encoder"]),
    "bert4rec": (lambda: BERT4Rec(ITEMS, **SMALL), ["output_bias", "item_emb.weight"]),
    "bert4rec_no_bias": (lambda: BERT4Rec(ITEMS, output_bias=False, **SMALL), ["item_emb.weight"]),
    "bert4rec_features": (
        lambda: BERT4Rec(ITEMS, item_features=features(), **SMALL), ["mask_emb", "output_bias", "item_encoder"]
    ),
}


def leading_groups(names: list[str]) -> list[str]:
    """Parameter names before the encoder, item-encoder internals folded into one entry."""
    out: list[str] = []
    for name in names:
        if name.startswith("encoder."):
            break
        name = "item_encoder" if name.startswith("item_encoder.") else name
        if not out or out[-1] != name:
            out.append(name)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_parameter_names_and_order_are_pinned(case: str) -> None:
    build, expected = CASES[case]
    model = build()
    names = [name for name, _ in model.named_parameters()]
    assert leading_groups(names) == expected
    assert all(name.startswith("encoder.") for name in names[names.index("encoder.pos_emb.weight"):])
    assert set(names) <= set(model.state_dict())

def test_special_rows_follow_the_real_items() -> None:
    sasrec, bert = SASRec(ITEMS, **SMALL), BERT4Rec(ITEMS, **SMALL)
    assert sasrec.item_emb.num_embeddings == ITEMS + 1 and sasrec.pad_row == ITEMS
    assert bert.item_emb.num_embeddings == ITEMS + 2 and (bert.pad_row, bert.mask_row) == (ITEMS, ITEMS + 1)
    for model in (sasrec, bert):
        assert model.item_emb.padding_idx == model.pad_row
        assert (model.item_emb.weight[model.pad_row] == 0).all()
