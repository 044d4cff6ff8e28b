"""Row-blocked (hidden @ table.T).gather(1, ids) against the one-piece autograd computation."""
from __future__ import annotations

import pytest
import torch

from recmodels.gathered_scores import gathered_scores
from recmodels.losses import SampledSoftmax


def inputs(n: int = 7, items: int = 11, dim: int = 3, k: int = 5):
    torch.manual_seed(0)
    hidden = torch.randn(n, dim, requires_grad=True)
    table = torch.randn(items, dim, requires_grad=True)
    ids = torch.randint(items, (n, k))
    ids[0, 1] = ids[0, 3]  # an item drawn twice for a row: both gradients must count
    return hidden, table, ids


@pytest.mark.parametrize("rows", [1, 3, 7, 100])  # 3: a short last block; 100: one block
def test_scores_and_gradients_equal_the_one_piece_computation(rows: int) -> None:
    hidden, table, ids = inputs()
    grad_out = torch.randn(ids.shape)
    expected = (hidden @ table.T).gather(1, ids)
    expected.backward(grad_out)
    expected_grads = hidden.grad.clone(), table.grad.clone()
    hidden.grad = table.grad = None
    got = gathered_scores(hidden, table, ids, rows)
    got.backward(grad_out)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(hidden.grad, expected_grads[0])
    torch.testing.assert_close(table.grad, expected_grads[1])


def test_only_the_inputs_that_need_gradients_get_them() -> None:
    hidden, table, ids = inputs()
    frozen = table.detach()
    gathered_scores(hidden, frozen, ids, 2).sum().backward()
    assert hidden.grad is not None and frozen.grad is None
    torch.testing.assert_close(hidden.grad, (hidden.detach() @ frozen.T).new_zeros(7, 11)
                               .scatter_add_(1, ids, torch.ones(ids.shape)) @ frozen)


def test_rows_is_checked() -> None:
    hidden, table, ids = inputs()
    with pytest.raises(ValueError, match="rows must be >= 1"):
        gathered_scores(hidden, table, ids, 0)


def test_per_position_sampled_softmax_on_cpu_streams_with_the_plain_gradients() -> None:
    """k x d > catalogue: the loss scores through gathered_scores, same loss and gradients."""
    torch.manual_seed(0)
    n, items, dim, k = 300, 40, 4, 16  # 300 rows: three 128-row blocks
    hidden = torch.randn(n, dim, requires_grad=True)
    table = torch.randn(items, dim, requires_grad=True)
    targets = torch.randint(items, (n,))
    negatives = torch.randint(items, (n, k))
    loss = SampledSoftmax(items, num_negatives=k, negatives="per_position")
    loss.sample_negatives = lambda device, rows: negatives
    value = loss(hidden, targets, table)
    assert _streamed(value)
    value.backward()
    got = hidden.grad.clone(), table.grad.clone()
    hidden.grad = table.grad = None
    ids = torch.cat([targets[:, None], negatives], 1)
    logits = (hidden @ table.T).gather(1, ids) - torch.full((items,), 1.0 / items).log()[ids]
    hits = torch.cat([torch.zeros(n, 1, dtype=torch.bool), negatives == targets[:, None]], 1)
    expected = -torch.log_softmax(logits.masked_fill(hits, float("-inf")), 1)[:, 0].mean()
    expected.backward()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(got[0], hidden.grad)
    torch.testing.assert_close(got[1], table.grad)


def _streamed(value: torch.Tensor) -> bool:
    """Whether the autograd graph behind ``value`` holds the row-blocked scoring node."""
    seen, stack = set(), [value.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "GatheredScores" in type(node).__name__:
            return True
        stack.extend(next_node for next_node, _ in node.next_functions)
    return False
