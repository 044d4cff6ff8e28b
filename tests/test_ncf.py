"""NCF models: fast whole-catalogue scoring equals pairwise forward; pre-training init."""
from __future__ import annotations

import pytest
import torch

from recmodels.ncf import GMF, MLP, NeuMF
from recmodels.pop import MostPopular
from train.evaluation import Evaluator
from train.training.tasks import PointwiseTask

NUM_USERS, NUM_ITEMS = 7, 13


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)


@pytest.mark.parametrize("make", [lambda: GMF(NUM_USERS, NUM_ITEMS, 4), lambda: MLP(NUM_USERS, NUM_ITEMS, 6, [12, 8, 4]), lambda: NeuMF(NUM_USERS, NUM_ITEMS, 4, 6, [12, 8, 4])])
def test_score_all_equals_pairwise_forward(make) -> None:
    model = make().eval()
    _randomise(model)
    users = torch.tensor([0, 3, 6])
    fast = model.score_all({"user": users})
    slow = torch.stack([model(torch.full((NUM_ITEMS,), int(u)), torch.arange(NUM_ITEMS)) for u in users])
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    cands = torch.tensor([[1, 5, 2], [0, 0, 12], [7, 8, 9]])
    torch.testing.assert_close(model.score_candidates({"user": users}, cands), slow.gather(1, cands))


def test_mlp_matches_concatenation_definition() -> None:
    """The split first layer must equal W [p_u; q_i] + b from the paper."""
    model = MLP(NUM_USERS, NUM_ITEMS, 5, [10, 3])
    _randomise(model)
    u, i = torch.tensor([2]), torch.tensor([4])
    w = torch.cat([model.tower.first_user.weight, model.tower.first_item.weight], dim=1)
    h = torch.relu(torch.cat([model.user_emb(u), model.item_emb(i)], 1) @ w.T + model.tower.first_user.bias)
    h = torch.relu(model.tower.rest[1](h))
    torch.testing.assert_close(model(u, i), model.out(h).squeeze(-1))


def test_neumf_pretrained_init_blends_both_models() -> None:
    gmf, mlp = GMF(NUM_USERS, NUM_ITEMS, 4), MLP(NUM_USERS, NUM_ITEMS, 6, [12, 8, 4])
    _randomise(gmf), _randomise(mlp)
    neumf = NeuMF(NUM_USERS, NUM_ITEMS, 4, 6, [12, 8, 4])
    neumf.load_pretrained(gmf, mlp, alpha=0.5)
    u, i = torch.arange(NUM_USERS), torch.arange(NUM_USERS) % NUM_ITEMS
    expected = 0.5 * gmf(u, i) + 0.5 * mlp(u, i)  # the fused layer is the blend of both heads
    torch.testing.assert_close(neumf(u, i), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: GMF(NUM_USERS, NUM_ITEMS, 4), lambda: NeuMF(NUM_USERS, NUM_ITEMS, 4, 6, [12, 8, 4])])
def test_embedding_l2_penalises_only_the_rows_a_batch_uses(make) -> None:
    model = make()
    _randomise(model)
    task = PointwiseTask(model, Evaluator(protocol="full", ks=(5,), metrics=("ndcg",)), embedding_l2=0.1)
    users, items = torch.tensor([0, 0, 3]), torch.tensor([2, 5, 2])
    batch = {"user": users, "item": items, "label": torch.tensor([1.0, 0.0, 0.0])}
    tables = [model] if isinstance(model, GMF) else [model.gmf, model.mlp]
    by_hand = sum(
        sum(float(t.user_emb.weight[u].pow(2).sum() + t.item_emb.weight[i].pow(2).sum()) for u, i in zip(users, items)) / 3
        for t in tables
    )
    bce = torch.nn.functional.binary_cross_entropy_with_logits(model(users, items), batch["label"])
    loss = task.training_loss(batch)
    torch.testing.assert_close(loss, bce + 0.1 * torch.tensor(by_hand))
    model.embedding_penalty(users, items).backward()
    for t in tables:
        touched_users = t.user_emb.weight.grad.abs().sum(1) > 0
        assert touched_users.tolist() == [u in (0, 3) for u in range(NUM_USERS)]
        touched_items = t.item_emb.weight.grad.abs().sum(1) > 0
        assert touched_items.tolist() == [i in (2, 5) for i in range(NUM_ITEMS)]


def test_embedding_l2_rejects_bad_values_and_models_without_a_penalty() -> None:
    evaluator = Evaluator(protocol="full", ks=(5,), metrics=("ndcg",))
    with pytest.raises(ValueError, match="embedding_l2 must be >= 0"):
        PointwiseTask(GMF(NUM_USERS, NUM_ITEMS, 4), evaluator, embedding_l2=-1.0)
    with pytest.raises(ValueError, match="model.task.embedding_l2=0"):
        PointwiseTask(MostPopular(NUM_ITEMS), evaluator, embedding_l2=0.1)
