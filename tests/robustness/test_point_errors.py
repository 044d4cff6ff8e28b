"""Bad values that once failed late or with a message naming nothing now fail before
training, naming the key (or the cause) and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import tiny_config
from train.evaluation import Evaluator
from train.training.config_checks import ConfigError, check_config


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_epochs=abc", r"trainer.max_epochs='abc' must be an integer or null"),
        ("trainer.max_epochs=0", r"trainer.max_epochs=0 must be >= 1 \(or -1 for no limit\)"),
        ("trainer.gradient_clip_val=abc", r"trainer.gradient_clip_val='abc' must be a number or null"),
        ("monitor=val/ndgc@10", r"monitor='val/ndgc@10' is not a metric validation logs; did you mean 'val/ndcg@10'"),
        ("monitor=val/ndcg@50", r"add k=50 to eval.ks"),
        ("monitor=test/ndcg@10", r"validation metric"),
        ("eval.ks=[a]", r"eval.ks=\['a'\] must be a list \(each entry an integer\)"),
        ("model.net.mf_dim=1.5", r"model.net.mf_dim=1.5 must be an integer"),
        ("model.net.layers=[16,0]", r"model.net.layers=\[16, 0\] must be >= 1"),
        ("+model.net.mf_dimm=3", r"NeuMF has no option 'mf_dimm'; did you mean 'mf_dim'"),
        ("data.num_users=abc", r"data.num_users='abc' must be an integer"),
        ("data.preprocess.min_user_interactions=x", r"data.preprocess.min_user_interactions='x' must be an integer"),
        ("seed=-1", r"seed=-1 must be >= 0"),
    ],
)
def test_config_values_name_key_and_fix(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(tiny_config(tmp_path, override))


def test_a_sampled_protocol_has_no_coverage_to_monitor(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"monitor='val/coverage@10' is not a metric validation logs"):
        check_config(tiny_config(tmp_path, "eval.protocol=sampled", "monitor=val/coverage@10"))
    check_config(tiny_config(tmp_path, "eval.protocol=sampled", "monitor=val/hr@10"))


def test_a_catalogue_smaller_than_k_names_the_cause() -> None:
    with pytest.raises(ValueError, match=r"data has 3 item\(s\) after preprocessing.*lower eval.ks \(e.g. eval.ks=\[3\]\)"):
        Evaluator("full", ks=(5, 20)).new_metrics(3)
