"""Adam whose cost follows the rows a batch touches: one optimiser, two update rules.

A model with ``sparse_embeddings`` hands its item tables sparse (row-wise) gradients. Dense
Adam would turn them into catalogue-sized updates (every row's moments decay every step);
:class:`RowwiseAdam` applies ``torch.optim.SparseAdam``'s lazy rule to them instead (only the
touched rows' moments and weights change) and ``torch.optim.Adam``/``AdamW`` to every
dense parameter, behind the single ``torch.optim.Optimizer`` that Lightning tasks, LR
schedulers and checkpoints expect:

    model.task.optimizer._target_=train.training.optimizers.RowwiseAdam

Which rule a parameter gets is read from its first gradient (``grad.is_sparse``), not from
the modules: ``configure_optimizers`` passes bare parameters, and the layout autograd
actually produced cannot disagree with the model. The choice is then fixed (a parameter
whose layout later changes is an error) and saved in ``state_dict`` so a resumed run
continues with the same rule and moments.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

ROWWISE, DENSE = "rowwise", "dense"
# Group settings each child optimiser reads from the composite's groups (LR schedulers
# change the composite's); weight decay is a dense-only setting.
SHARED = ("lr", "betas", "eps")


class RowwiseAdam(Optimizer):
    """Lazy Adam for sparse gradients, Adam (``decoupled_weight_decay``: AdamW) for dense.

    Both rules keep Adam's per-parameter state (``step``, ``exp_avg``, ``exp_avg_sq``) in this
    optimiser's ``state``. The lazy rule (SparseAdam's definition) updates, for the rows r a
    gradient holds, ``m_r <- b1 m_r + (1-b1) g_r``, ``v_r <- b2 v_r + (1-b2) g_r^2`` and
    ``w_r <- w_r - lr sqrt(1-b2^t)/(1-b1^t) m_r / (sqrt(v_r) + eps)``, t counting the
    parameter's steps; other rows keep weights and moments. ``weight_decay`` applies to dense
    parameters only: decaying every row each step is the catalogue-sized work avoided here.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
    ) -> None:
        _check_settings(lr, betas, eps, weight_decay)
        self._children: dict[str, Optimizer] | None = None
        self._layout: dict[int, str] = {}  # parameter position (as in state_dict) -> rule
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.decoupled_weight_decay = decoupled_weight_decay

    # -- the step ---------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._record_layouts():
            self._children = None
        for rule, child in self._child_optimizers().items():
            self._sync_settings(child, rule)
            child.step()
        return loss

    def _positions(self) -> Iterable[tuple[int, int, Tensor]]:
        """(position, group index, parameter) in state_dict order."""
        position = 0
        for index, group in enumerate(self.param_groups):
            for param in group["params"]:
                yield position, index, param
                position += 1

    def _record_layouts(self) -> bool:
        """Note the rule of parameters seen with a gradient for the first time; True if any."""
        changed = False
        for position, _, param in self._positions():
            if param.grad is None:
                continue
            rule = ROWWISE if param.grad.is_sparse else DENSE
            known = self._layout.get(position)
            if known is None:
                self._layout[position] = rule
                changed = True
            elif known != rule:
                raise RuntimeError(
                    f"RowwiseAdam: parameter {position} (shape {tuple(param.shape)}) had a {known} gradient "
                    f"before and a {rule} one now; its moments follow one rule. Keep each table's gradient "
                    "layout fixed (sparse_embeddings with a sampled loss, never loss=ce)"
                )
        return changed

    def _child_optimizers(self) -> dict[str, Optimizer]:
        """torch's Adam and SparseAdam over this optimiser's parameters, sharing its state."""
        if self._children is not None:
            return self._children
        grouped: dict[str, list[dict[str, Any]]] = {ROWWISE: [], DENSE: []}
        for index, group in enumerate(self.param_groups):
            for rule in grouped:
                params = [p for pos, i, p in self._positions() if i == index and self._layout.get(pos) == rule]
                grouped[rule].append({"params": params, "source": index})
        children: dict[str, Optimizer] = {}
        if any(g["params"] for g in grouped[DENSE]):
            dense = torch.optim.AdamW if self.decoupled_weight_decay else torch.optim.Adam
            children[DENSE] = dense(grouped[DENSE], lr=self.defaults["lr"], weight_decay=0.0)
        if any(g["params"] for g in grouped[ROWWISE]):
            children[ROWWISE] = torch.optim.SparseAdam(grouped[ROWWISE], lr=self.defaults["lr"])
        for child in children.values():
            child.state = self.state  # one state: saved, loaded and moved with this optimiser
        self._children = children
        return children

    def _sync_settings(self, child: Optimizer, rule: str) -> None:
        for group in child.param_groups:
            source = self.param_groups[group["source"]]
            for key in SHARED:
                group[key] = source[key]
            if rule == DENSE:
                group["weight_decay"] = source["weight_decay"]

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["layout"] = {str(position): rule for position, rule in sorted(self._layout.items())}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        layout = state_dict.pop("layout", None)
        if layout is None:
            raise ValueError(
                "this optimizer state was not written by RowwiseAdam (no 'layout' entry); resume with "
                "the optimizer that wrote it, or start the optimizer afresh (init_from=<run dir>)"
            )
        super().load_state_dict(state_dict)  # replaces self.state: the children are rebuilt
        self._layout = {int(position): rule for position, rule in layout.items()}
        self._children = None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._children = None


def _check_settings(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    if lr < 0:
        raise ValueError(f"model.task.optimizer.lr={lr} must be >= 0")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"model.task.optimizer.betas={list(betas)} must be two numbers in [0, 1)")
    if eps <= 0:
        raise ValueError(f"model.task.optimizer.eps={eps} must be > 0")
    if weight_decay < 0:
        raise ValueError(f"model.task.optimizer.weight_decay={weight_decay} must be >= 0")
