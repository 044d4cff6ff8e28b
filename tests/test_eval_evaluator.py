"""Evaluator: batches, masking, sharding, sampled and given protocols, configs."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval_support import (
    TableModel,
    brute_force_metrics,
    brute_force_rank,
    known_by_split,
    make_data,
    random_data,
)

from data_modules.interactions import PAD, TEST, TRAIN, VAL
from data_modules.pairs import PairDataModule
from recmodels.modes import eval_mode
from train.evaluation import Evaluator, RankingMetrics, evaluate

CONF = Path(__file__).resolve().parents[1] / "conf"
NON_COVERAGE = ("hr", "ndcg", "mrr", "precision", "f1")


def _table(num_users: int, num_items: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 5, (num_users, num_items), generator=torch.Generator().manual_seed(seed)).float()


def _context_items(data, split: int) -> dict[int, set[int]]:
    known = known_by_split(data)
    splits = (TRAIN,) if split == VAL else (TRAIN, VAL)
    return {u: set().union(*(known.get((u, s), set()) for s in splits)) for u in range(data.num_users)}


@pytest.mark.parametrize("split", [VAL, TEST])
def test_full_protocol_matches_brute_force(split) -> None:
    data = random_data(num_users=37, num_items=30, min_len=3, max_len=20, seed=0)
    table = _table(data.num_users, data.num_items, seed=1)
    ks = (1, 5, 10)
    got = evaluate(TableModel(table), data, split, Evaluator("full", ks=ks, batch_size=8))
    context = _context_items(data, split)
    users, targets = data.targets(split)
    ranks = [
        brute_force_rank(table[u].tolist(), int(t), context[int(u)] - {int(t)})
        for u, t in zip(users, targets)
    ]
    expected = brute_force_metrics(ranks, ks)
    for k in ks:  # top-k of scores after masking; ties are broken arbitrarily but only
        # among equal scores, so compare with the set of items any valid order could show.
        surely, maybe = set(), set()
        for u, t in zip(users, targets):
            allowed = [i for i in range(data.num_items) if i not in context[int(u)] - {int(t)}]
            cutoff = sorted((float(table[u, i]) for i in allowed), reverse=True)[k - 1]
            surely |= {i for i in allowed if float(table[u, i]) > cutoff}
            maybe |= {i for i in allowed if float(table[u, i]) >= cutoff}
        assert len(surely) <= round(got[f"coverage@{k}"] * data.num_items) <= len(maybe)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_coverage_exact_without_ties() -> None:
    data = random_data(num_users=20, num_items=25, min_len=3, max_len=10, seed=3)
    table = torch.randperm(20 * 25, generator=torch.Generator().manual_seed(0)).reshape(20, 25).float()
    got = evaluate(TableModel(table), data, TEST, Evaluator("full", ks=(3,), batch_size=6))
    context = _context_items(data, TEST)
    users, targets = data.targets(TEST)
    covered = set()
    for u, t in zip(users.tolist(), targets.tolist()):
        allowed = [i for i in range(25) if i not in context[u] - {t}]
        covered |= set(sorted(allowed, key=lambda i: -float(table[u, i]))[:3])
    assert got["coverage@3"] == pytest.approx(len(covered) / 25)


def test_history_items_on_top_are_not_rewarded() -> None:
    """A model that puts every seen item first must still rank the target by unseen items."""
    seqs = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [2, 4, 6, 8, 2]]  # user 2 re-consumes item 2 at test
    data = make_data(seqs, num_items=12)
    table = torch.zeros(3, 12)
    for u, seq in enumerate(seqs):
        table[u, seq[:-1]] = 100.0  # context items (train + val) on top
        table[u, seq[-1]] = 50.0  # the target next
    got = evaluate(TableModel(table), data, TEST, Evaluator("full", ks=(1,)))
    assert got["hr@1"] == 1.0 and got["mrr"] == 1.0
    # Without masking the same model would rank targets 0 and 1 at position 4: prove the
    # context really holds those items.
    loader = Evaluator("full").dataloader(data, TEST)
    batch = next(iter(loader))
    pairs = set(zip(batch["mask_rows"].tolist(), batch["mask_items"].tolist()))
    assert pairs == {(0, 0), (0, 1), (0, 2), (0, 3), (1, 5), (1, 6), (1, 7), (1, 8), (2, 4), (2, 6), (2, 8)}


def test_validation_context_excludes_val_and_test_items() -> None:
    data = make_data([[0, 1, 2, 3]], num_items=6)  # train 0,1; val 2; test 3
    val = next(iter(Evaluator("full", max_history=3).dataloader(data, VAL)))
    test = next(iter(Evaluator("full", max_history=3).dataloader(data, TEST)))
    assert val["target"].tolist() == [2] and test["target"].tolist() == [3]
    assert val["history"].tolist() == [[PAD, 0, 1]] and test["history"].tolist() == [[0, 1, 2]]
    assert sorted(val["mask_items"].tolist()) == [0, 1]
    assert sorted(test["mask_items"].tolist()) == [0, 1, 2]


def test_history_is_last_items_left_padded() -> None:
    data = make_data([list(range(10)), [3, 4, 5]], num_items=12)
    batch = next(iter(Evaluator("full", max_history=4).dataloader(data, TEST)))
    assert batch["history"].tolist() == [[5, 6, 7, 8], [PAD, PAD, 3, 4]]
    assert batch["user"].tolist() == [0, 1]


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_sharded_loaders_cover_rows_once_and_merge_exactly(protocol) -> None:
    data = random_data(num_users=53, num_items=80, min_len=3, max_len=30, seed=5)
    model = TableModel(torch.randn(53, 80, generator=torch.Generator().manual_seed(2)))
    ev = Evaluator(protocol, ks=(5, 10), num_negatives=20, batch_size=7)
    whole = ev.new_metrics(data.num_items)
    for batch in ev.dataloader(data, TEST):
        ev.update(whole, model, batch)
    shards, seen = [], []
    for rank in range(3):
        metric = ev.new_metrics(data.num_items)
        for batch in ev.dataloader(data, TEST, rank=rank, world_size=3):
            seen += list(zip(batch["user"].tolist(), batch["target"].tolist()))
            if protocol == "sampled":
                seen_cands = batch["candidates"]
            ev.update(metric, model, batch)
        shards.append(metric)
    users, targets = data.targets(TEST)
    assert sorted(seen) == sorted(zip(users.tolist(), targets.tolist()))
    assert len(seen) == len(users)  # no padding, no duplicates
    merged = ev.new_metrics(data.num_items)
    for name in merged._defaults:
        setattr(merged, name, sum(getattr(m, name) for m in shards))
    expected = whole.compute()
    for key, value in merged.compute().items():
        assert float(value) == pytest.approx(float(expected[key]), abs=1e-6), key
    if protocol == "sampled":  # candidates do not depend on the sharding
        full_cands = ev.candidates(data, TEST)
        np.testing.assert_array_equal(seen_cands.numpy(), full_cands[-len(seen_cands):])


def test_sampled_protocol_matches_brute_force() -> None:
    data = random_data(num_users=40, num_items=60, min_len=3, max_len=20, seed=6)
    table = _table(40, 60, seed=3)
    ev = Evaluator("sampled", ks=(1, 5), num_negatives=15, sampler="popularity", seed=9)
    got = evaluate(TableModel(table), data, TEST, ev)
    cands = ev.candidates(data, TEST)
    users, targets = data.targets(TEST)
    ranks = [brute_force_rank(table[u, cands[r]].tolist(), 0, set()) for r, u in enumerate(users)]
    assert (cands[:, 0] == targets).all()
    assert got == pytest.approx(brute_force_metrics(ranks, (1, 5)), abs=1e-9)
    assert "coverage@5" not in got
    assert ev.protocol_name == "sampled-popularity-15"


def test_given_negatives_protocol() -> None:
    negatives = np.array([[6, 7, 8], [0, 1, 9], [5, 6, 7]])
    data = make_data([[0, 1, 2], [3, 4, 5], [8, 9, 1]], num_items=10, eval_negatives={"test": negatives})
    table = torch.arange(10.0).repeat(3, 1)  # item id is its score
    ev = Evaluator("sampled", ks=(1, 2), sampler="given")
    assert ev.protocol_name == "sampled-given"
    got = evaluate(TableModel(table), data, "test", ev)
    # targets 2, 5, 1 among given negatives [6,7,8], [0,1,9], [5,6,7]: ranks 3, 1, 3
    assert got == pytest.approx(brute_force_metrics([3, 1, 3], (1, 2)))
    assert ev.protocol_name == "sampled-given-3"


def test_nan_scores_and_wrong_shapes_are_errors() -> None:
    data = make_data([[0, 1, 2], [3, 4, 5]], num_items=8)
    table = torch.zeros(2, 8)
    table[1, 7] = float("nan")  # NaN on a masked item would be overwritten by -inf
    with pytest.raises(ValueError, match="NaN scores"):
        evaluate(TableModel(table), data, TEST, Evaluator("full", ks=(2,)))
    with pytest.raises(ValueError, match="score_all returned shape"):
        evaluate(TableModel(torch.zeros(2, 7)), data, TEST, Evaluator("full", ks=(2,)))
    with pytest.raises(ValueError, match="exceeds the catalogue"):
        evaluate(TableModel(torch.zeros(2, 8)), data, TEST, Evaluator("full", ks=(9,)))


def test_evaluate_restores_training_mode() -> None:
    data = make_data([[0, 1, 2]], num_items=5)
    model = TableModel(torch.zeros(1, 5)).train()
    evaluate(model, data, TEST, Evaluator("full", ks=(1,)))
    assert model.training


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_previous_mode_even_on_errors(training: bool) -> None:
    model = TableModel(torch.zeros(1, 5)).train(training)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        assert not model.training
        raise RuntimeError("boom")
    assert model.training is training


@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_data_module_serves_the_evaluation_rows_of_its_spec(protocol: str) -> None:
    data = random_data(num_users=23, num_items=40, min_len=3, max_len=15, seed=8)
    evaluator = Evaluator(protocol, ks=(5,), num_negatives=10, batch_size=6)
    module = PairDataModule(data, evaluator.spec, batch_size=10, num_negatives=1)
    for split, loader in ((VAL, module.val_dataloader()), (TEST, module.test_dataloader())):
        expected = list(evaluator.dataloader(data, split))
        got = list(loader)
        assert len(got) == len(expected) > 1
        for a, b in zip(got, expected):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="eval_spec"):
        PairDataModule(data, None, batch_size=10, num_negatives=1).val_dataloader()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "partial"}, "unknown eval.protocol 'partial'"),
        ({"sampler": "random"}, "unknown eval.sampler 'random'"),
        ({"ks": (0,)}, "positive"),
        ({"num_negatives": 0}, "num_negatives must be positive"),
        ({"batch_size": -1}, "batch_size must be positive"),
        ({"protocol": "sampled", "ks": (10, 200)}, "k=200 >= list length"),
        ({"metrics": ("hr", "map")}, "unknown metric"),
    ],
)
def test_invalid_configuration(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        Evaluator(**kwargs)


def test_bad_split_and_shard() -> None:
    data = make_data([[0, 1, 2]], num_items=5)
    with pytest.raises(ValueError, match="can only evaluate split"):
        Evaluator().dataloader(data, "train")
    with pytest.raises(ValueError, match="rank < world_size"):
        Evaluator().dataloader(data, TEST, rank=3, world_size=3)


def test_hydra_configs_instantiate_with_overrides(tmp_path) -> None:
    pytest.importorskip("hydra")
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    shutil.copytree(CONF / "eval", tmp_path / "eval")
    (tmp_path / "main.yaml").write_text("defaults:\n  - eval: default\n  - _self_\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        default = instantiate(compose("main").eval)
        overrides = ["eval.protocol=sampled", "eval.num_negatives=100", "eval.sampler=popularity"]
        sampled = instantiate(compose("main", overrides).eval)
        given = instantiate(compose("main", ["eval=given"]).eval)
        bad = compose("main", ["eval.protocol=sample"]).eval
    assert isinstance(default, Evaluator) and default.ks == (5, 10, 20)
    assert default.protocol_name == "full"
    assert sampled.protocol_name == "sampled-popularity-100"
    assert given.sampler == "given" and given.ks == (10,)
    with pytest.raises(Exception, match="unknown eval.protocol 'sample'"):
        instantiate(bad)


def test_new_metrics_is_fresh_and_sampled_drops_coverage() -> None:
    full = Evaluator("full", ks=(5,)).new_metrics(20)
    sampled = Evaluator("sampled", ks=(5,), num_negatives=10).new_metrics(20)
    assert isinstance(full, RankingMetrics) and "coverage" in full.metrics
    assert "coverage" not in sampled.metrics
    assert set(sampled.metrics) == set(NON_COVERAGE)


class _TransposedTable(TableModel):
    """Returns a fresh but non-contiguous score tensor (exercises the 2-D masking path)."""

    def score_all(self, context):
        return self.table.T[:, context["user"]].T


def test_non_contiguous_scores_are_masked_the_same() -> None:
    data = random_data(num_users=25, num_items=30, min_len=3, max_len=20, seed=8)
    table = _table(25, 30, seed=4)
    assert not _TransposedTable(table).score_all({"user": torch.arange(3)}).is_contiguous()
    ev = Evaluator("full", ks=(3, 10), batch_size=6)
    assert evaluate(_TransposedTable(table), data, TEST, ev) == evaluate(TableModel(table), data, TEST, ev)


def test_given_negative_equal_to_target_is_not_a_competitor() -> None:
    """NCF's test.negative lists some targets among their own negatives: the copy is dropped."""
    negatives = np.array([[2, 7, 8], [5, 1, 0]])  # each row lists its own target once
    data = make_data([[0, 1, 2], [3, 4, 5]], num_items=10, eval_negatives={"test": negatives})
    table = torch.arange(10.0).repeat(2, 1)  # item id is its score
    ev = Evaluator("sampled", ks=(1, 2), sampler="given")
    with pytest.warns(UserWarning, match="2 of 2 rows list their target"):
        got = evaluate(TableModel(table), data, TEST, ev)
    # target 2 vs 7, 8 (its copy dropped): rank 2; target 5 vs 5 (dropped), 1, 0: rank 0.
    assert got == pytest.approx(brute_force_metrics([2, 0], (1, 2)))
