"""``compile=``: the setting is validated, a compiled model trains like the eager one, and
a compiled run's checkpoint serves from an uncompiled model."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from recmodels.losses import make_loss, sequence_loss
from recmodels.sasrec import SASRec
from tests.helpers import tiny_config
from train.runs.checkpoints import model_state
from train.serving.evaluate import evaluate_run
from train.serving.loading import load_recommender
from train.training.compilation import COMPILE_KEYS, compile_model, compile_options
from train.training.run import train

TINY_SASREC = ["model=sasrec", "model.net.hidden=8", "model.net.num_blocks=1", "model.net.max_len=8",
               "model.net.dropout=0.0", "model.datamodule.max_len=8"]  # fmt: skip


def run_config(value: object, *trainer: str) -> OmegaConf:
    return OmegaConf.create({"compile": value, "trainer": OmegaConf.from_dotlist(list(trainer))})


# --- the setting ---------------------------------------------------------------------------


def test_null_false_true_and_a_mapping_of_torch_compile_keywords() -> None:
    assert compile_options(None) is None and compile_options(False) is None
    assert compile_options(True) == {}
    value = OmegaConf.create({"mode": "max-autotune", "dynamic": True, "fullgraph": False, "backend": "inductor"})
    assert compile_options(value) == {"mode": "max-autotune", "dynamic": True, "fullgraph": False, "backend": "inductor"}
    assert {"mode", "dynamic", "fullgraph", "backend", "options"} <= set(COMPILE_KEYS) and "model" not in COMPILE_KEYS


def test_unknown_keyword_and_bad_type_name_the_key_and_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"compile\.modes is not a torch.compile keyword; valid keys: .*mode"):
        compile_options({"modes": "max-autotune"})
    for bad in ("yes", 1, ["mode"]):
        with pytest.raises(ValueError, match=r"compile=.* must be null \(eager\), true .*dynamic"):
            compile_options(bad)


def test_the_composed_config_carries_the_key_off_by_default(tmp_path: Path) -> None:
    assert tiny_config(tmp_path).compile is None
    cfg = tiny_config(tmp_path, "compile={mode: max-autotune, dynamic: true}")
    assert compile_options(cfg.compile) == {"mode": "max-autotune", "dynamic": True}


def test_deepspeed_zero3_is_refused_and_an_eager_model_is_left_alone() -> None:
    zero3 = ["strategy._target_=train.training.strategies.deepspeed", "strategy.config.zero_optimization.stage=3"]
    with pytest.raises(ValueError, match="ZeRO-3.*use compile=null with ZeRO-3, or compile with trainer=deepspeed_zero2"):
        compile_model(torch.nn.Linear(2, 2), run_config(True, *zero3))
    model = compile_model(torch.nn.Linear(2, 2), run_config(None, *zero3))  # eager ZeRO-3 stays allowed
    assert model._compiled_call_impl is None


# --- compiled behaviour ----------------------------------------------------------------------


@pytest.mark.slow  # inductor's first compile: ~25 s on 2 cores (4 s with its cache warm)
def test_compiled_sasrec_gives_the_eager_loss_and_gradients_with_the_same_keys() -> None:
    torch.manual_seed(0)
    eager = SASRec(num_items=30, hidden=8, num_blocks=1, num_heads=1, max_len=8, dropout=0.0)
    compiled = compile_model(copy.deepcopy(eager), run_config(True))
    assert compiled._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    # One left-padded row (-1): attention takes the padding mask, in one length group
    # (a group per length would compile the encoder once per length).
    history = torch.randint(0, 30, (6, 8))
    history[1, :1] = -1
    targets = torch.where(history >= 0, torch.randint(0, 30, (6, 8)), -1)
    batch = {"history": history, "targets": targets}
    loss = make_loss("ce", 30)
    losses = []
    for model in (eager, compiled):
        model.train()
        value = sequence_loss(model, batch, loss)
        value.backward()
        losses.append(value.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_compiled_run_through_the_entry_point_serves_from_an_uncompiled_model(tmp_path: Path) -> None:
    # aot_eager: the same capture (graphs, autograd) as inductor without its code generation,
    # which the test above pays for once.
    cfg = tiny_config(tmp_path, *TINY_SASREC, "compile={backend: aot_eager}", "trainer.max_epochs=1", "num_threads=1",
                      "eval.ks=[10]")
    metrics = train(cfg)
    assert all(math.isfinite(metrics[k]) for k in ("val/ndcg@10", "test/ndcg@10", "test/hr@10"))
    state = model_state(torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True))
    fresh = SASRec(num_items=state["item_emb.weight"].shape[0] - 1, hidden=8, num_blocks=1, num_heads=1, max_len=8)
    fresh.load_state_dict(state, strict=True)  # the compiled run saved the eager model's keys
    served, _ = load_recommender(tmp_path)
    assert served._compiled_call_impl is None  # serving rebuilds from the config, never compiles
    # The uncompiled model scores the run again as the compiled one did during training.
    again = evaluate_run(tmp_path, "best", split="both")
    for key in ("val/ndcg@10", "test/ndcg@10", "test/hr@10"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6), key


def test_a_bad_value_fails_the_config_check_before_any_data_loads(tmp_path: Path) -> None:
    from train.training.config_checks import ConfigError, check_config

    check_config(tiny_config(tmp_path, "compile=true"))
    with pytest.raises(ConfigError, match=r"compile\.fullgraf is not a torch.compile keyword"):
        check_config(tiny_config(tmp_path, "compile={fullgraf: true}"))
