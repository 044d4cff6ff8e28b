"""`python -m train init_from=...`: warm start, frozen rows, learning-rate scale, errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import torch

from data_modules.alignment import IdMapError
from data_modules.interactions import TEST, TRAIN, VAL
from data_modules.sources import tabular
from tests.helpers import tiny_config
from tests.serving_runs import QUICK, SMALL_NETS, trained_run
from train.runs.artifacts import ArtifactError
from train.building import build_with_data
from train.runs.checkpoints import CheckpointError
from train.training.incremental import align_with_previous_run, warm_start
from train.serving import load_recommender
from train.training.run import train

MORE_DATA = ["data.num_users=150", "data.num_items=70"]  # tiny_config has 120 users, 60 items
MODELS = ["neumf", "sasrec", "bert4rec"]


@pytest.fixture(scope="module")
def base_runs(tmp_path_factory) -> dict[str, Path]:
    return {name: trained_run(tmp_path_factory.mktemp(name) / "run", name) for name in MODELS}


def update_config(out: Path, model: str, init_from: Path, *overrides: str):
    return tiny_config(out, f"model={model}", *QUICK, *SMALL_NETS[model], *MORE_DATA, f"init_from={init_from}", *overrides)


def warm_model(cfg):
    data = align_with_previous_run(hydra.utils.instantiate(cfg.data), cfg.init_from)
    return warm_start(build_with_data(cfg.model.net, data), data, cfg), data


def weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix("model."): v for k, v in state.get("state_dict", state).items()}


@pytest.mark.parametrize("name", MODELS)
def test_warm_start_scores_old_users_and_items_like_the_old_model(name: str, base_runs, tmp_path: Path) -> None:
    old, old_ctx = load_recommender(base_runs[name])
    model, data = warm_model(update_config(tmp_path, name, base_runs[name]))
    model.eval()
    n_users, n_items = old_ctx.data.num_users, old_ctx.data.num_items
    # Old raw ids keep their internal ids; the new data's unseen ids come after them.
    assert data.num_users == 150 and data.num_items == 70
    np.testing.assert_array_equal(data.user_ids[:n_users], old_ctx.data.user_ids)
    np.testing.assert_array_equal(data.item_ids[:n_items], old_ctx.data.item_ids)
    assert not set(data.user_ids[n_users:]) & set(old_ctx.data.user_ids)
    # Same scores for old users with their old histories, over the old items.
    users = np.arange(n_users)
    context = old_ctx.user_context(users)
    with torch.no_grad():
        want = old.score_all(context)
        got = model.score_all(context)
    assert got.shape == (n_users, 70)
    torch.testing.assert_close(got[:, :n_items], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["neumf", "bert4rec"])
def test_frozen_old_rows_survive_training_and_lr_is_scaled(name: str, base_runs, tmp_path: Path) -> None:
    base = base_runs[name]
    meta = json.loads((base / "artifacts" / "artifact.json").read_text())
    before = weights(base / meta["weights"])
    runs = {}
    for freeze in (True, False):
        out = tmp_path / f"freeze-{freeze}"
        cfg = update_config(out, name, base, f"init.freeze_old_rows={freeze}", "init.lr_scale=0.5")
        runs[freeze] = weights(Path(train(cfg)["best_checkpoint"]))
        saved = (out / "artifacts" / "config.yaml").read_text()
        assert "lr: 0.0005" in saved  # 0.001 * 0.5, recorded in the run's config
    n_items = meta["num_items"]
    tables = [k for k, v in before.items() if v.dim() >= 1 and runs[True][k].shape != v.shape]
    assert tables  # every id table grew
    for key in tables:
        old = before[key]
        rows = torch.arange(len(old)) if old.shape[0] != n_items + 2 else torch.cat(
            [torch.arange(n_items), torch.tensor([70, 71])])  # BERT4Rec: pad and [MASK] moved
        assert torch.equal(runs[True][key][rows], old), key  # frozen: bit for bit
        assert not torch.equal(runs[False][key][rows], old), key  # not frozen: they moved
    dense = [k for k in before if k not in tables and before[k].is_floating_point() and before[k].numel() > 1]
    assert any(not torch.equal(runs[True][k], before[k]) for k in dense)  # the rest did train


def test_a_checkpoint_of_another_model_is_refused(base_runs, tmp_path: Path) -> None:
    cfg = update_config(tmp_path, "neumf", base_runs["sasrec"])
    with pytest.raises(CheckpointError, match=r"holds a recmodels\.sasrec\.SASRec model.*builds recmodels\.ncf\.NeuMF"):
        train(cfg)


def test_another_model_configuration_is_named(base_runs, tmp_path: Path) -> None:
    cfg = update_config(tmp_path, "neumf", base_runs["neumf"], "model.net.mf_dim=16")
    with pytest.raises(CheckpointError, match=r"does not fit.*model\.net\.mf_dim: 32 -> 16"):
        train(cfg)


def copied_run(base: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the run whose artifacts point at a checkpoint inside the copy."""
    run = tmp_path / "copy"
    shutil.copytree(base, run)
    meta_path = run / "artifacts" / "artifact.json"
    meta = json.loads(meta_path.read_text())
    ckpt = run / "checkpoints" / Path(meta["weights"]).name
    meta["weights"] = str(ckpt.relative_to(run))
    meta_path.write_text(json.dumps(meta))
    return run, ckpt


def test_a_corrupt_checkpoint_is_refused(base_runs, tmp_path: Path) -> None:
    run, ckpt = copied_run(base_runs["neumf"], tmp_path)
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        train(update_config(tmp_path / "out", "neumf", run))
    ckpt.with_name(ckpt.name + ".sha256").unlink()  # an older run without a checksum
    with pytest.raises(CheckpointError, match="could not be read"):
        train(update_config(tmp_path / "out2", "neumf", run))


def test_corrupt_artifacts_are_refused(base_runs, tmp_path: Path) -> None:
    run, _ = copied_run(base_runs["neumf"], tmp_path)
    (run / "artifacts" / "artifact.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="artifact.json is damaged"):
        train(update_config(tmp_path / "out", "neumf", run))


def test_a_checkpoint_that_disagrees_with_its_id_maps_is_refused(base_runs, tmp_path: Path) -> None:
    run, ckpt = copied_run(base_runs["neumf"], tmp_path)
    bigger = trained_run(tmp_path / "bigger", "neumf", *MORE_DATA)  # 150 users, 70 items
    meta = json.loads((bigger / "artifacts" / "artifact.json").read_text())
    shutil.copyfile(bigger / meta["weights"], ckpt)
    shutil.copyfile(bigger / (meta["weights"] + ".sha256"), ckpt.with_name(ckpt.name + ".sha256"))
    with pytest.raises(CheckpointError, match=r"does not match the id maps.*120 users, 60 items.*150 rows"):
        train(update_config(tmp_path / "out", "neumf", run))


def test_new_data_with_other_id_types_is_refused(base_runs, tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {"user": ["u1"] * 3 + ["u2"] * 3, "item": [1, 2, 3, 1, 3, 2], "timestamp": [1, 2, 3, 4, 5, 6]}
    )
    rows.to_csv(tmp_path / "new.csv", index=False)
    new = tabular(tmp_path / "new.csv", cache=False)
    with pytest.raises(IdMapError, match="user ids of the previous run are integer.*string"):
        align_with_previous_run(new, base_runs["neumf"])


def test_unaligned_data_and_weight_decay_with_freezing_are_refused(base_runs, tmp_path: Path) -> None:
    cfg = update_config(tmp_path, "neumf", base_runs["neumf"])
    data = hydra.utils.instantiate(cfg.data)
    data.user_ids = data.user_ids[::-1].copy()  # a user map that does not start with the old one
    with pytest.raises(IdMapError, match="align the data first"):
        warm_start(build_with_data(cfg.model.net, data), data, cfg)
    cfg = update_config(tmp_path, "neumf", base_runs["neumf"], "init.freeze_old_rows=true",
                        "+model.task.optimizer.weight_decay=0.01")
    with pytest.raises(ValueError, match="weight decay"):
        warm_model(cfg)


def raw_pairs(data) -> set[tuple]:
    frame = data.rows(TRAIN, VAL, TEST)
    return set(zip(data.user_ids[frame["user"]].tolist(), data.item_ids[frame["item"]].tolist()))


def test_alignment_keeps_the_raw_interactions(base_runs, tmp_path: Path) -> None:
    cfg = update_config(tmp_path, "sasrec", base_runs["sasrec"])
    fresh = hydra.utils.instantiate(cfg.data)
    aligned = align_with_previous_run(fresh, cfg.init_from)
    assert raw_pairs(aligned) == raw_pairs(fresh)


def test_config_keys_and_the_update_preset(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "init_from=/runs/base", "init.lr_scale=0.1", "init.freeze_old_rows=true")
    assert (cfg.init_from, cfg.init.lr_scale, cfg.init.freeze_old_rows) == ("/runs/base", 0.1, True)
    assert tiny_config(tmp_path).init_from is None  # default: train from scratch
    preset = tiny_config(tmp_path, "incremental=update", "init_from=/runs/base")
    assert preset.trainer.max_epochs == 2 and preset.init.lr_scale == 1.0
    from omegaconf.errors import MissingMandatoryValue

    with pytest.raises(MissingMandatoryValue):
        tiny_config(tmp_path, "incremental=update").init_from
