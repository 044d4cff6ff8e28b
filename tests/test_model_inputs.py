"""Each model's declared ``inputs`` are exactly the context keys its scores depend on.

What a model reads is measured here without looking at the declaration: a key is read
when changing its values changes ``score_all``. The declared keys must then be enough on
their own, and leaving any of them out must fail.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import pytest
import torch
from torch import Tensor

from recmodels.base import CONTEXT_KEYS, Context, Recommender, declared_inputs
from recmodels.bert4rec import BERT4Rec
from recmodels.feature_ncf import FeatureNeuMF
from recmodels.feature_tensors import FeatureTensors
from recmodels.ncf import GMF, MLP, NeuMF
from recmodels.pop import MostPopular
from recmodels.sasrec import SASRec

USERS, ITEMS, BATCH, LENGTH = 6, 20, 4, 5


def features(rows: int) -> FeatureTensors:
    return FeatureTensors(
        num_rows=rows,
        categorical={"kind": torch.arange(rows) % 3},
        cardinalities={"kind": 3},
        multi_valued={"kind": False},
    )


def popular() -> MostPopular:
    model = MostPopular(ITEMS)
    model.fit(torch.arange(ITEMS))
    return model


MODELS: dict[str, Callable[[], Recommender]] = {
    "gmf": lambda: GMF(USERS, ITEMS),
    "mlp": lambda: MLP(USERS, ITEMS, 8, [16, 8]),
    "neumf": lambda: NeuMF(USERS, ITEMS, 4, 8, [16, 8]),
    "neumf_features": lambda: FeatureNeuMF(USERS, ITEMS, features(ITEMS), features(USERS), 4, 8, [16, 8]),
    "sasrec": lambda: SASRec(ITEMS, hidden=8, num_heads=2, max_len=LENGTH + 1),
    "sasrec_features": lambda: SASRec(ITEMS, hidden=8, max_len=LENGTH + 1, item_features=features(ITEMS)),
    "bert4rec": lambda: BERT4Rec(ITEMS, hidden=8, max_len=LENGTH + 1),
    "bert4rec_features": lambda: BERT4Rec(ITEMS, hidden=8, max_len=LENGTH + 1, item_features=features(ITEMS)),
    "pop": popular,
}


def full_context(seed: int) -> Context:
    """Every key a context may carry, with values drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    history = torch.randint(ITEMS, (BATCH, LENGTH), generator=generator)
    history[0, :2] = -1  # some left padding
    return {"user": torch.randperm(USERS, generator=generator)[:BATCH], "history": history}


@torch.no_grad()
def keys_read(model: Recommender) -> set[str]:
    """Keys whose values change the scores when redrawn, all else fixed."""
    base = full_context(0)
    scores = model.score_all(base)
    return {
        key for key in CONTEXT_KEYS
        if not torch.equal(model.score_all({**base, key: full_context(1)[key]}), scores)
    }


@pytest.fixture(params=sorted(MODELS))
def model(request) -> Recommender:
    torch.manual_seed(0)
    return MODELS[request.param]().eval()


def test_declared_inputs_are_the_keys_read(model: Recommender) -> None:
    assert declared_inputs(model) == keys_read(model)


@torch.no_grad()
def test_declared_keys_suffice(model: Recommender) -> None:
    context = full_context(0)
    inputs = declared_inputs(model) or {"user"}  # a key-less model still needs a batch size
    only = {key: context[key] for key in inputs}
    candidates = torch.randint(ITEMS, (BATCH, 3), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(model.score_all(only), model.score_all(context))
    torch.testing.assert_close(model.score_candidates(only, candidates), model.score_candidates(context, candidates))


@torch.no_grad()
def test_each_declared_key_is_needed(model: Recommender) -> None:
    context = full_context(0)
    for key in declared_inputs(model):
        with pytest.raises(KeyError):
            model.score_all({k: v for k, v in context.items() if k != key})


@torch.no_grad()
def test_a_model_reading_nothing_takes_any_single_key() -> None:
    model, context = popular(), full_context(0)
    assert torch.equal(model.score_all({"user": context["user"]}), model.score_all({"history": context["history"]}))


class Undeclared(Recommender):
    def score_all(self, context: Context) -> Tensor:
        return torch.zeros(len(context["user"]), 1)


class OddlyDeclared(Undeclared):
    inputs: ClassVar[frozenset[str]] = frozenset({"session"})


@pytest.mark.parametrize("cls", [Undeclared, OddlyDeclared])
def test_a_missing_or_unknown_declaration_is_a_clear_error(cls: type[Recommender]) -> None:
    with pytest.raises(TypeError, match="inputs must be a frozenset of context keys"):
        declared_inputs(cls())
