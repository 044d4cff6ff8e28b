"""The evaluator gives identical metrics on CUDA and CPU (skipped without a GPU)."""
from __future__ import annotations

import pytest
import torch
from test_eval_support import TableModel, random_data

from data_modules.interactions import TEST, VAL
from train.evaluation import Evaluator, evaluate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _untied_table(num_users: int, num_items: int) -> torch.Tensor:
    """Distinct scores, so top-k lists (and coverage) do not depend on tie-breaking."""
    gen = torch.Generator().manual_seed(0)
    return torch.randperm(num_users * num_items, generator=gen).reshape(num_users, num_items).float()


@pytest.mark.parametrize(
    "evaluator",
    [
        Evaluator("full", ks=(1, 5, 20), batch_size=16),
        Evaluator("sampled", ks=(1, 10), num_negatives=30, sampler="popularity", batch_size=16),
    ],
    ids=["full", "sampled"],
)
@pytest.mark.parametrize("split", [VAL, TEST])
def test_cuda_matches_cpu(evaluator: Evaluator, split: int) -> None:
    data = random_data(num_users=90, num_items=120, min_len=3, max_len=60, seed=11)
    table = _untied_table(90, 120)
    cpu = evaluate(TableModel(table), data, split, evaluator, device="cpu")
    gpu = evaluate(TableModel(table), data, split, evaluator, device="cuda")
    assert gpu.keys() == cpu.keys()
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, abs=1e-9), key


class _HalfTable(TableModel):
    def score_all(self, context):
        return super().score_all(context).to(torch.bfloat16)


def test_bf16_scores_are_ranked_in_float32() -> None:
    data = random_data(num_users=40, num_items=50, min_len=3, max_len=30, seed=12)
    table = torch.randint(0, 8, (40, 50), generator=torch.Generator().manual_seed(1)).float()
    ev = Evaluator("full", ks=(5,), metrics=("hr", "ndcg", "mrr"))
    # Small integers are exact in bf16, so the ranks (and metrics) must match float32.
    assert evaluate(_HalfTable(table), data, TEST, ev, device="cuda") == pytest.approx(
        evaluate(TableModel(table), data, TEST, ev, device="cpu"), abs=1e-9
    )
