"""HSTU: the layer formula by hand, causality, padding, long histories, scoring, training."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hydra import compose, initialize_config_dir

from data_modules.interactions import Histories
from data_modules.sequence_windows import SequenceTrainingSet, causal_collate
from recmodels.hstu import HSTU
from recmodels.losses import make_loss, sequence_loss
from recmodels.transformer import length_groups
from tests.helpers import CONF_DIR, tiny_config
from train.runs.targets import allowed_targets
from train.serving import load_recommender
from train.training.run import train

NUM_ITEMS = 30


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_model(**kw) -> HSTU:
    torch.manual_seed(0)
    args = dict(hidden=8, num_blocks=2, num_heads=2, max_len=6, dropout=0.0)
    args.update(kw)
    model = HSTU(NUM_ITEMS, **args).eval()
    with torch.no_grad():  # O(1) biases, so a wrong distance or sign shows in the outputs
        for block in model.encoder.blocks:
            block.attn.rel_bias.weight.normal_(std=1.0)
    return model


def layer_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def silu(x: float | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x / (1 + torch.exp(-x))


def by_hand(model: HSTU, items: list[int]) -> torch.Tensor:
    """Output vectors of one unpadded history, with explicit loops over heads and positions."""
    enc, d, n = model.encoder, model.hidden, model.max_len
    length = len(items)
    x = model.item_emb.weight[items] * math.sqrt(d) + enc.pos_emb.weight[n - length :]
    for block in enc.blocks:
        heads, dqk, dv = block.attn.num_heads, block.attn.attention_dim, block.attn.linear_dim
        projected = silu(layer_norm(x) @ block.uvqk.weight.T)
        u, v = projected[:, : heads * dv], projected[:, heads * dv : 2 * heads * dv]
        q = projected[:, 2 * heads * dv : 2 * heads * dv + heads * dqk]
        k = projected[:, 2 * heads * dv + heads * dqk :]
        attended = torch.zeros(length, heads * dv)
        for h in range(heads):
            qs, ks, vs = (t[:, h * w : (h + 1) * w] for t, w in ((q, dqk), (k, dqk), (v, dv)))
            for i in range(length):
                for j in range(i + 1):  # causal: keys up to the query
                    weight = silu(qs[i] @ ks[j] + block.attn.rel_bias.weight[i - j]) / n
                    attended[i, h * dv : (h + 1) * dv] += weight * vs[j]
        x = x + (u * layer_norm(attended)) @ block.out.weight.T + block.out.bias
    return x / x.norm(dim=-1, keepdim=True) / model.temperature


@pytest.mark.parametrize("max_groups", [1, 3])  # 1: padded keys masked; 3: rows also trimmed
@pytest.mark.parametrize("query_block", [64, 2])  # 2: queries scored in causal blocks
@torch.no_grad()
def test_outputs_follow_the_layer_formula_for_padded_rows(max_groups: int, query_block: int) -> None:
    model = small_model(max_groups=max_groups)
    for block in model.encoder.blocks:
        block.attn.query_block = query_block
    rows = [[4, 9, 2, 17, 5], [11, 3], [7]]
    history = torch.tensor([[-1] * (5 - len(r)) + r for r in rows])
    out = model(history)
    for b, items in enumerate(rows):
        torch.testing.assert_close(out[b, 5 - len(items) :], by_hand(model, items), atol=1e-5, rtol=1e-4)
        assert (out[b, : 5 - len(items)] == 0).all()  # padded positions are zero


@torch.no_grad()
def test_a_later_item_never_changes_earlier_outputs() -> None:
    model = small_model()
    history = torch.tensor([[3, 8, 1, 14, 6, 2]])
    changed = history.clone()
    changed[0, 3] = 20
    a, b = model(history), model(changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


@torch.no_grad()
def test_left_padding_and_batch_neighbours_do_not_change_a_history() -> None:
    model = small_model()
    alone = model.score_all({"history": torch.tensor([[5, 6, 7]])})
    padded = torch.tensor([[-1, -1, -1, 5, 6, 7], [1, 2, 3, 4, 5, 6]])
    torch.testing.assert_close(model.score_all({"history": padded})[:1], alone)


@torch.no_grad()
def test_scores_are_cosines_over_the_temperature_and_candidates_gather_them() -> None:
    model = small_model(temperature=0.1)
    history = torch.tensor([[-1, 3, 4, 5], [1, 2, 3, 4], [-1, -1, -1, 9]])
    context = {"history": history}
    scores = model.score_all(context)
    assert scores.shape == (3, NUM_ITEMS)
    last = model.encoder(model._input_embeddings(history), history >= 0)[:, -1]
    table = model.item_emb.weight[:NUM_ITEMS]
    cosine = (last @ table.T) / last.norm(dim=1, keepdim=True) / table.norm(dim=1)[None, :]
    torch.testing.assert_close(scores, cosine / 0.1, atol=1e-4, rtol=1e-5)
    candidates = torch.tensor([[0, 29, 5], [7, 7, 1], [2, 3, 4]])
    torch.testing.assert_close(model.score_candidates(context, candidates), scores.gather(1, candidates))
    torch.testing.assert_close(model.user_representation(context), model(history)[:, -1])
    ranges = model.item_scores(context)  # the range-at-a-time path of whole-catalogue ranking
    torch.testing.assert_close(torch.cat([ranges.range(0, 10), ranges.range(10, NUM_ITEMS)], 1), scores)
    torch.testing.assert_close(ranges.at(candidates), scores.gather(1, candidates))


@torch.no_grad()
def test_raw_dot_products_without_l2_norm() -> None:
    model = small_model(l2_norm=False, temperature=1.0)
    history = torch.tensor([[2, 3, 4]])
    last = model.encoder(model._input_embeddings(history), history >= 0)[:, -1]
    torch.testing.assert_close(model.score_all({"history": history}), last @ model.item_emb.weight[:NUM_ITEMS].T)


def test_long_histories_grouped_by_length_equal_the_padded_computation() -> None:
    model = small_model(max_len=1100, num_heads=1)
    lengths = [1100, 3, 40, 700, 5]
    generator = torch.Generator().manual_seed(1)
    history = torch.full((len(lengths), 1100), -1)
    for row, length in enumerate(lengths):
        history[row, 1100 - length :] = torch.randint(NUM_ITEMS, (length,), generator=generator)
    valid = history >= 0
    assert len(length_groups(valid, model.hidden, model.encoder.max_groups)) > 1  # trimming happens
    x = model._input_embeddings(history) + model.encoder.pos_emb.weight

    grouped = model.encoder(model._input_embeddings(history), valid)
    (grouped ** 2).sum().backward()
    grouped_grads = [p.grad.clone() for p in model.encoder.parameters()]
    model.zero_grad()
    padded = model.encoder._encode(x, valid)  # every row at the full 1,100 positions
    (padded ** 2).sum().backward()

    torch.testing.assert_close(grouped, padded, atol=1e-5, rtol=1e-5)
    for got, want in zip(grouped_grads, (p.grad for p in model.encoder.parameters())):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="temperature"):
        HSTU(NUM_ITEMS, temperature=0.0)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        HSTU(NUM_ITEMS, hidden=10, num_heads=3)
    model = HSTU(NUM_ITEMS, hidden=10, num_heads=3, attention_dim=4, linear_dim=5)  # explicit sizes
    assert model.encoder.blocks[0].uvqk.out_features == 2 * 3 * 5 + 2 * 3 * 4


@torch.no_grad()
def test_growing_the_catalogue_keeps_old_scores() -> None:
    model = small_model()
    context = {"history": torch.tensor([[-1, 3, 4, 5], [1, 2, 3, 4]])}
    before = model.score_all(context)
    model.grow(NUM_ITEMS + 4)
    after = model.score_all(context)
    assert after.shape == (2, NUM_ITEMS + 4)
    torch.testing.assert_close(after[:, :NUM_ITEMS], before)


def test_sparse_embeddings_give_the_dense_loss_with_row_wise_gradients() -> None:
    dense, sparse = small_model(), small_model(sparse_embeddings=True)
    sparse.load_state_dict(dense.state_dict())
    history = torch.tensor([[-1, 3, 4, 5], [1, 2, 3, 4]])
    batch = {"history": history, "targets": torch.tensor([[-1, 4, 5, 6], [2, 3, 4, 5]])}

    def loss_of(model: HSTU) -> torch.Tensor:  # the same negatives for both
        generator = torch.Generator().manual_seed(3)
        return sequence_loss(model, batch, make_loss("sampled_softmax", NUM_ITEMS, num_negatives=8, generator=generator))

    losses = [loss_of(dense), loss_of(sparse)]
    torch.testing.assert_close(losses[1], losses[0])
    for loss in losses:
        loss.backward()
    grad = sparse.item_emb.weight.grad
    assert grad.is_sparse
    torch.testing.assert_close(grad.to_dense(), dense.item_emb.weight.grad)


def cyclic_histories(num_users: int = 20, length: int = 10) -> Histories:
    """User u walks the catalogue with its own step: the next item needs two items of context."""
    users = np.arange(num_users)
    items = ((7 * users)[:, None] + (1 + users % 4)[:, None] * np.arange(length)[None, :]) % NUM_ITEMS
    indptr = np.arange(num_users + 1) * length
    return Histories(indptr=indptr.astype(np.int64), items=items.reshape(-1).astype(np.int64))


def test_sampled_softmax_training_learns_a_tiny_dataset() -> None:
    torch.manual_seed(0)
    data = SequenceTrainingSet(cyclic_histories(), max_len=9)
    batch = causal_collate(data.__getitems__(list(range(len(data)))))
    model = HSTU(NUM_ITEMS, hidden=16, num_blocks=2, num_heads=1, max_len=9, dropout=0.0)
    loss_fn = make_loss("sampled_softmax", NUM_ITEMS, num_negatives=16, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.98))
    losses = []
    for _ in range(120):
        optimizer.zero_grad()
        loss = sequence_loss(model, batch, loss_fn)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    model.eval()
    with torch.no_grad():
        predicted = (model(batch["history"]) @ model.item_table().T).argmax(-1)
    targets = batch["targets"][:, 1:]  # from the second item on, the next item is determined
    accuracy = (predicted[:, 1:] == targets)[targets >= 0].float().mean().item()
    assert accuracy > 0.9


def test_training_through_the_entry_point_and_loading_the_run(tmp_path: Path) -> None:
    assert "recmodels.hstu.HSTU" in allowed_targets("model")  # run folders naming it may load
    cfg = tiny_config(tmp_path, "model=hstu", "trainer.max_epochs=2", "eval.ks=[5,10]", "num_threads=1",
                      "model.net.hidden=16", "model.net.num_heads=2", "model.net.max_len=10",
                      "model.task.loss.num_negatives=16")
    metrics = train(cfg)
    for key in ("val/ndcg@10", "test/ndcg@10", "test/hr@10", "test/mrr"):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0, key
    model, ctx = load_recommender(tmp_path)
    assert isinstance(model, HSTU) and model.encoder.blocks[0].attn.num_heads == 2
    users = torch.arange(4)
    history = torch.from_numpy(ctx.known.padded(users.numpy(), ctx.max_history))
    scores = model.score_all({"history": history})
    assert scores.shape == (4, ctx.data.num_items) and torch.isfinite(scores).all()


def test_published_large_setting_builds_its_per_head_sizes() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=hstu_large_ml1m"])
    model = HSTU(3706, **{k: v for k, v in cfg.model.net.items() if k != "_target_"})
    assert len(model.encoder.blocks) == 8 and model.temperature == 0.05 and model.max_len == 200
    attn = model.encoder.blocks[0].attn
    assert (attn.num_heads, attn.attention_dim, attn.linear_dim) == (2, 25, 25)  # dqk = dv = 25 per head
    assert dict(cfg.model.task.loss) == {"name": "sampled_softmax", "num_negatives": 128, "negatives": "per_position"}
