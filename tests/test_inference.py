"""Batch top-K equals brute-force scoring; loading from run dirs and checkpoints is safe."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from data_modules.interactions import TEST, TRAIN, VAL
from recmodels.base import PairwiseRecommender
from tests.serving_runs import randomise_, trained_run
from train.runs.artifacts import ArtifactError, find_run_dir, load_run_artifacts
from train.building import build_with_data
from train.runs.checkpoints import CheckpointError
from train.serving.infer import run_infer
from train.serving import IdIndex, load_recommender, top_k

K = 7


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory.mktemp("neumf") / "run", "neumf")


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory.mktemp("sasrec") / "run", "sasrec")


def random_weights(run_dir: Path, folder: Path) -> Path:
    """The run's model with large random weights, saved as a plain state dict: well-spread
    scores make the expected ordering unambiguous."""
    model, _ = load_recommender(run_dir)
    path = folder / "random.pt"
    torch.save(randomise_(model).state_dict(), path)
    return path


def brute_force(run_dir: Path, k: int, weights: Path | None = None) -> tuple[np.ndarray, np.ndarray, object]:
    """Independent expectation: rebuild data from the config, load the weights by hand,
    score every user with their whole history, mask every known item, full stable argsort."""
    cfg = OmegaConf.load(run_dir / "artifacts" / "config.yaml")
    data = hydra.utils.instantiate(cfg.data)
    model = build_with_data(cfg.model.net, data).eval()
    meta = json.loads((run_dir / "artifacts" / "artifact.json").read_text())
    state = torch.load(weights or run_dir / meta["weights"], weights_only=True)
    state = state.get("state_dict", state)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    users = np.arange(data.num_users)
    histories = data.histories(TRAIN, VAL, TEST).padded(users, int(cfg.eval.max_history))
    with torch.no_grad():
        context = {"user": torch.from_numpy(users), "history": torch.from_numpy(histories)}
        scores = model.score_all(context).numpy().astype(np.float64)
    rows = data.rows(TRAIN, VAL, TEST)
    scores[rows["user"].to_numpy(), rows["item"].to_numpy()] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1), data


@pytest.mark.parametrize("model", ["neumf", "sasrec"])
def test_batch_topk_equals_brute_force(model: str, request, tmp_path: Path) -> None:
    run = request.getfixturevalue("run_dir" if model == "neumf" else "sasrec_run")
    weights = random_weights(run, tmp_path)
    out = tmp_path / "recs.parquet"
    run_infer(OmegaConf.create({"run": str(run), "ckpt": str(weights), "users": "all", "k": K, "out": str(out),
                                "exclude_seen": True, "on_unknown": "skip", "batch_size": 9, "device": "cpu",
                                "progress": False}))
    got = pd.read_parquet(out)
    order, scores, data = brute_force(run, K, weights)
    assert list(got.columns) == ["user", "rank", "item", "score"]
    assert len(got) == data.num_users * K  # every user has >= K unseen items here
    got = got.sort_values(["user", "rank"])
    np.testing.assert_array_equal(got["user"].to_numpy(), np.repeat(data.user_ids, K))
    np.testing.assert_array_equal(got["rank"].to_numpy(), np.tile(np.arange(1, K + 1), data.num_users))
    np.testing.assert_array_equal(got["item"].to_numpy(), data.item_ids[order].reshape(-1))
    np.testing.assert_allclose(got["score"].to_numpy(), scores.reshape(-1), rtol=1e-4, atol=1e-5)


def test_short_lists_when_k_exceeds_unseen(run_dir: Path, tmp_path: Path) -> None:
    model, ctx = load_recommender(run_dir)
    from train.serving import write_recommendations

    out = tmp_path / "all.parquet"
    report = write_recommendations(model, ctx, np.arange(ctx.data.num_users), ctx.data.num_items, out, progress=False)
    got = pd.read_parquet(out)
    unseen = ctx.data.num_items - np.diff(ctx.known.indptr)
    per_user = got.groupby("user").size().reindex(ctx.data.user_ids, fill_value=0).to_numpy()
    np.testing.assert_array_equal(per_user, unseen)
    assert report.short_lists == int((unseen < ctx.data.num_items).sum())
    assert report.rows == int(unseen.sum())


def test_csv_holds_the_parquet_table_with_one_header(run_dir: Path, tmp_path: Path) -> None:
    """Streamed in chunks of 9 users: the header is written once, every row follows it."""
    model, ctx = load_recommender(run_dir)
    from train.serving import write_recommendations

    users = np.arange(ctx.data.num_users)
    for name in ("recs.parquet", "recs.csv"):
        write_recommendations(model, ctx, users, K, tmp_path / name, batch_size=9, progress=False)
    text = (tmp_path / "recs.csv").read_text()
    assert text.count("user,rank,item,score") == 1 and text.startswith("user,rank,item,score\n")
    got, expected = pd.read_csv(tmp_path / "recs.csv"), pd.read_parquet(tmp_path / "recs.parquet")
    assert len(got) == ctx.data.num_users * K
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-6)
    empty = tmp_path / "none.csv"
    assert write_recommendations(model, ctx, users[:0], K, empty, progress=False).rows == 0
    assert empty.read_text() == "user,rank,item,score\n"


def test_cli_user_file_jsonl_writes_only_out(run_dir: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("3\nnot-a-user\n0\n999999\n")
    out = tmp_path / "nested" / "recs.jsonl"
    before = sorted(p for p in run_dir.rglob("*"))
    proc = subprocess.run(
        [sys.executable, "-m", "train.cli.infer", f"run={run_dir}", f"users={users}", "k=4", f"out={out}", "progress=false"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 2 unknown user id(s)" in proc.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["user"] for line in lines] == [3, 0]
    order, scores, data = brute_force(run_dir, 4)
    for line in lines:
        internal = int(np.flatnonzero(data.user_ids == line["user"])[0])
        assert line["items"] == data.item_ids[order[internal]].tolist()
        np.testing.assert_allclose(line["scores"], scores[internal], rtol=1e-5)
    assert sorted(p for p in run_dir.rglob("*")) == before  # nothing written in the run dir
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nested", "users.txt"]  # nor in the cwd


def test_load_from_checkpoint_and_plain_state_dicts(run_dir: Path, tmp_path: Path) -> None:
    model, ctx = load_recommender(run_dir)
    users = {"user": torch.arange(5)}
    expected = model.score_all(users)
    # A checkpoint file inside the run dir finds its run.
    ckpt = ctx.weights
    model2, ctx2 = load_recommender(ckpt)
    assert ctx2.run_dir == ctx.run_dir
    torch.testing.assert_close(model2.score_all(users), expected)
    # A consolidated fp32 state dict: plain, and Lightning-style {"state_dict": {"model.*"}}.
    plain = tmp_path / "plain.pt"
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, plain)
    wrapped = tmp_path / "consolidated.pt"
    torch.save({"state_dict": {f"model.{k}": v.clone() for k, v in model.state_dict().items()}}, wrapped)
    for path in (plain, wrapped):
        other, _ = load_recommender(run_dir, ckpt=path)
        torch.testing.assert_close(other.score_all(users), expected)


def test_bad_checkpoints_raise_checkpoint_error(run_dir: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(load_run_artifacts(run_dir).weights.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="could not be read"):
        load_recommender(run_dir, ckpt=truncated)
    mismatched = tmp_path / "other.pt"
    torch.save({"gmf.user_emb.weight": torch.zeros(3, 2)}, mismatched)
    with pytest.raises(CheckpointError, match="does not fit NeuMF"):
        load_recommender(run_dir, ckpt=mismatched)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_recommender(run_dir, ckpt=tmp_path / "missing.ckpt")
    pickled = tmp_path / "pickle.pt"
    torch.save({"state_dict": object.__new__(IdIndex)}, pickled)  # arbitrary object: refused
    with pytest.raises(CheckpointError, match="could not be read"):
        load_recommender(run_dir, ckpt=pickled)


@pytest.mark.parametrize("model", ["neumf", "sasrec"])
def test_context_carries_the_declared_inputs(model: str, request) -> None:
    run = request.getfixturevalue("run_dir" if model == "neumf" else "sasrec_run")
    net, ctx = load_recommender(run)
    assert ctx.inputs == type(net).inputs == ({"user"} if model == "neumf" else {"history"})
    assert set(ctx.user_context(np.arange(2))) >= ctx.inputs


def test_a_model_without_declared_inputs_is_refused_at_load(run_dir: Path, monkeypatch) -> None:
    monkeypatch.delattr(PairwiseRecommender, "inputs")
    with pytest.raises(TypeError, match="NeuMF.inputs must be a frozenset"):
        load_recommender(run_dir)


def test_missing_artifacts_are_reported(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ArtifactError, match="artifacts/artifact.json"):
        find_run_dir(tmp_path / "checkpoints")


def test_top_k_orders_ties_by_id_and_marks_masked() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, float("-inf"), 3.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    items, values = top_k(scores, 4)
    assert items.tolist() == [[1, 2, 4, 0], [0, 1, 2, 3]]
    items, _ = top_k(torch.tensor([[float("-inf"), 1.0, float("-inf")]]), 3)
    assert items.tolist() == [[1, -1, -1]]
    generator = torch.Generator().manual_seed(0)
    random = torch.randint(0, 3, (50, 40), generator=generator).float()
    expected = torch.sort(random, dim=1, descending=True, stable=True)
    items, values = top_k(random, 9)
    assert torch.equal(items, expected.indices[:, :9]) and torch.equal(values, expected.values[:, :9])


def test_id_index_coerces_json_and_text_ids() -> None:
    numeric = IdIndex(np.array([10, 3, 7, 2**62 + 1]), "user")
    got = numeric.to_internal([3, "7", 10.0, "x", 2.5, 11, True, " 10 ", 2**62 + 1, str(2**62 + 1), 2**62])
    assert got.tolist() == [1, 2, 0, -1, -1, -1, -1, 0, 3, 3, -1]  # big ids stay exact
    text = IdIndex(np.array(["b", "a", "10"], dtype=object), "item")
    assert text.to_internal(["a", 10, "zz"]).tolist() == [1, 2, -1]
    assert text.to_raw(np.array([2, 0])).tolist() == ["10", "b"]


def test_masking_never_writes_into_shared_model_scores() -> None:
    """Most-popular returns one expanded row for the whole batch: masking one user's
    items must neither reach the other users nor the model's counts."""
    from recmodels.pop import MostPopular
    from train.serving import recommend

    model = MostPopular(4)
    model.fit(torch.tensor([4.0, 3.0, 2.0, 1.0]))
    exclude = (torch.tensor([0, 1]), torch.tensor([0, 1]))  # user row 0 saw item 0, row 1 saw item 1
    items, _ = recommend(model, {"user": torch.tensor([0, 1])}, 2, exclude)
    assert items.tolist() == [[1, 2], [0, 2]]
    assert model.counts.tolist() == [4.0, 3.0, 2.0, 1.0]


@pytest.mark.slow
def test_deepspeed_run_is_rebuilt_from_its_consolidated_weights(tmp_path: Path) -> None:
    """A ZeRO checkpoint is a folder of shards: the artifacts consolidate it once, and the
    rebuilt model reproduces the test metrics the run reported."""
    run = tmp_path / "ds"
    overrides = ["trainer=deepspeed_zero2", "trainer.devices=1", "trainer.accelerator=cpu", "logger=none",
                 "trainer.max_epochs=1", "data.num_users=60", "data.num_items=60", "data.min_length=5",
                 "data.max_length=12", f"hydra.run.dir={run}"]
    proc = subprocess.run([sys.executable, "-m", "train", *overrides], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert Path(metrics["best_checkpoint"]).is_dir()  # shards, not one file
    assert (run / "artifacts" / "artifact.json").is_file(), "the run did not write its artifacts"
    model, ctx = load_recommender(run)
    assert ctx.weights == run / "artifacts" / "weights_fp32.pt"
    from train.evaluation import evaluate

    direct = evaluate(model, ctx.data, "test", hydra.utils.instantiate(ctx.cfg.eval))
    assert direct["ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], abs=1e-6)
    with pytest.raises(CheckpointError, match="recflow-consolidate"):
        load_recommender(run / "checkpoints" / "last.ckpt")  # an unconsolidated folder
