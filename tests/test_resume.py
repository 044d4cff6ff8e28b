"""``recflow-train resume=RUN_DIR``: same folder, same checkpoint bookkeeping, same W&B run,
and the metrics of a run that was never interrupted."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.test_tracking import STAMP, TINY_GMF, offline_runs, run_record, train_cli
from train.training.distributed import prepare_argv
from train.training.resume import LAST_CHECKPOINT, ResumeError, merge_overrides, resume_argv, resume_checkpoint
from train.training.tracking import RUN_FILE

TIMING = ("train_seconds",)


def fake_run(root: Path, *overrides: str, last: bool = True) -> Path:
    """A run folder as Hydra and Lightning leave it, without training anything."""
    run_dir = root / "outputs" / "runs" / "2026-01-01_10-00-00_gmf_synthetic"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run_dir / "checkpoints").mkdir()
    if last:
        (run_dir / LAST_CHECKPOINT).write_bytes(b"")
    return run_dir


def empty_dir(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


def comparable(metrics: dict) -> dict:
    """metrics.json without wall-clock time, and the best checkpoint by file name."""
    out = {k: v for k, v in metrics.items() if k not in TIMING}
    out["best_checkpoint"] = Path(out["best_checkpoint"]).name
    return out


# -- the command line a resume turns into ---------------------------------------------------
def test_resume_reuses_the_runs_overrides_folder_and_last_checkpoint(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, "model=gmf", "trainer.max_epochs=1", "+trainer.max_time=null",
                       f"ckpt_path={tmp_path}/old.ckpt")
    argv = resume_argv(["train", "--cfg", "job", f"resume={run_dir}", "trainer.max_epochs=2", "trainer.max_time=1h"])
    assert argv == [
        "train", "--cfg", "job",  # flags keep their values next to them
        "model=gmf", "trainer.max_epochs=2", "++trainer.max_time=1h",  # new values replace the saved ones in place
        f"resume={run_dir.resolve()}", f"hydra.run.dir={run_dir.resolve()}", f"ckpt_path={run_dir.resolve() / LAST_CHECKPOINT}",
        "hydra.mode=RUN",  # a sweep's job resumes as one run
    ]
    assert resume_argv(["train", "resume=null", "seed=1"]) == ["train", "resume=null", "seed=1"]


def test_repeating_the_runs_own_model_or_folder_is_allowed(tmp_path: Path) -> None:
    """A pasted original command line next to resume= is fine; only other values are refused."""
    run_dir = fake_run(tmp_path, "model=gmf")
    (run_dir / ".hydra" / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices:\n      data: synthetic\n      model: gmf\n")
    argv = resume_argv(["train", f"resume={run_dir}", "model=gmf", "data=synthetic", f"hydra.run.dir={run_dir}"])
    assert argv[1:3] == ["model=gmf", f"resume={run_dir.resolve()}"]
    with pytest.raises(ResumeError, match="does not take 'data=movielens'"):
        resume_argv(["train", f"resume={run_dir}", "data=movielens"])


def test_every_torchrun_rank_joins_the_resumed_folder(tmp_path: Path) -> None:
    """Ranks read the same folder, so none waits for rank 0 to publish a new one."""
    run_dir = fake_run(tmp_path, "model=gmf")
    dirs = set()
    for rank in (0, 1):
        env = {"TORCHELASTIC_RUN_ID": "job7", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_USE_AGENT_STORE": "True"}
        argv = prepare_argv(resume_argv(["train", f"resume={run_dir}"]), env=env)
        dirs |= {a for a in argv if a.startswith("hydra.run.dir=")}
    assert dirs == {f"hydra.run.dir={run_dir.resolve()}"}


def test_ckpt_path_alone_continues_in_the_checkpoints_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = fake_run(tmp_path, "model=gmf")
    last = run_dir / LAST_CHECKPOINT
    assert resume_argv(["train", f"ckpt_path={last}"]) == ["train", f"ckpt_path={last}", f"hydra.run.dir={run_dir.resolve()}"]
    assert f"resume={run_dir.resolve()}" in capsys.readouterr().err
    # An explicit folder wins; a checkpoint outside any run folder starts a new one, with a warning.
    given = ["train", f"ckpt_path={last}", "hydra.run.dir=elsewhere"]
    assert resume_argv(given) == given
    loose = tmp_path / "last.ckpt"
    assert resume_argv(["train", f"ckpt_path={loose}"]) == ["train", f"ckpt_path={loose}"]
    assert "starts a new one" in capsys.readouterr().err


def test_a_config_composed_in_python_resumes_from_the_folders_last_checkpoint(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, "model=gmf")
    cfg = OmegaConf.create({"resume": str(run_dir), "ckpt_path": None})
    assert resume_checkpoint(cfg) == str(run_dir.resolve() / LAST_CHECKPOINT)
    assert resume_checkpoint(OmegaConf.create({"resume": str(run_dir), "ckpt_path": "x.ckpt"})) == "x.ckpt"
    assert resume_checkpoint(OmegaConf.create({"resume": None, "ckpt_path": None})) is None
    with pytest.raises(ResumeError, match="no such folder"):
        resume_checkpoint(OmegaConf.create({"resume": str(tmp_path / "gone"), "ckpt_path": None}))


def test_merge_keeps_one_value_per_key() -> None:
    assert merge_overrides(["a=1", "model=gmf"], ["b=2", "a=3"]) == ["a=3", "model=gmf", "b=2"]


@pytest.mark.parametrize("make, extra, message", [
    (lambda root: root / "nope", (), "no such folder"),
    (lambda root: empty_dir(root), (), r"not a run folder \(no .hydra/overrides.yaml\)"),
    (lambda root: fake_run(root, last=False), (), r"checkpoints/last.ckpt does not exist.*without resume="),
    (lambda root: fake_run(root).parent, (), r"multirun folder: resume one of its jobs"),
    (lambda root: fake_run(root), ("model=sasrec",), r"does not take 'model=sasrec'.*new run"),
    (lambda root: fake_run(root), ("hydra.run.dir=x",), "continues in its own folder"),
    (lambda root: fake_run(root), ("ckpt_path=x.ckpt",), "without resume="),
    (lambda root: fake_run(root), ("-m",), "drop -m/--multirun"),
])
def test_a_folder_that_cannot_be_resumed_is_refused_with_the_fix(tmp_path: Path, make, extra, message) -> None:
    with pytest.raises(ResumeError, match=message):
        resume_argv(["train", f"resume={make(tmp_path)}", *extra])


def test_resume_needs_a_folder() -> None:
    with pytest.raises(ResumeError, match="resume= needs a run folder"):
        resume_argv(["train", "resume="])


# -- a real interruption ---------------------------------------------------------------------
@pytest.mark.slow
def test_resumed_run_continues_in_place_and_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    """GMF (no dropout) stopped after 1 of 2 epochs and resumed == 2 epochs straight: same
    metrics.json, same best checkpoint kept, one folder, one W&B run id, one train.log."""
    args = [*TINY_GMF, "logger=wandb", "callbacks.model_checkpoint.save_top_k=1"]
    straight_cwd, cwd = tmp_path / "straight", tmp_path / "interrupted"
    train_cli(straight_cwd, *args, "trainer.max_epochs=2")
    train_cli(cwd, *args, "trainer.max_epochs=1")
    (run_dir,) = (cwd / "outputs" / "runs").iterdir()
    assert re.fullmatch(rf"{STAMP}_gmf_synthetic", run_dir.name), run_dir.name
    run_id = json.loads((run_dir / RUN_FILE).read_text())["wandb_id"]

    done = train_cli(cwd, f"resume=outputs/runs/{run_dir.name}", "trainer.max_epochs=2")
    assert "Restored all states from the checkpoint" in done.stdout + done.stderr
    assert [p.name for p in (cwd / "outputs" / "runs").iterdir()] == [run_dir.name]

    (straight_dir,) = (straight_cwd / "outputs" / "runs").iterdir()
    resumed = json.loads((run_dir / "metrics.json").read_text())
    straight = json.loads((straight_dir / "metrics.json").read_text())
    assert comparable(resumed) == comparable(straight)
    assert Path(resumed["best_checkpoint"]).parent == run_dir / "checkpoints"
    # Best-checkpoint bookkeeping survived: top-1 replaced the epoch-1 file as in the straight run.
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt")) == \
        sorted(p.name for p in (straight_dir / "checkpoints").glob("*.ckpt"))

    # One W&B run: every session's offline folder carries the id stored in the run folder.
    sessions = offline_runs(run_dir)
    assert len(sessions) == 2 and all(f.name == f"run-{run_id}.wandb" for f in sessions)
    assert {run_record(f).display_name for f in sessions} == {"gmf-synthetic-pointwise-s42"}
    assert json.loads((run_dir / RUN_FILE).read_text())["wandb_id"] == run_id

    # One log for both sessions, with Lightning's messages and the results table.
    log = (run_dir / "train.log").read_text()
    assert log.count("Restored all states from the checkpoint") == 1
    assert "pytorch_lightning" in log and log.count("| test |") == 2 and "Run directory:" in log


@pytest.mark.parametrize(
    ("callbacks", "saved"),
    [
        (["time spent"], False),  # the command's budget: a resume with more time trains on
        (["time spent", "early stopped"], True),  # early stopping decided too: it stands
        (["early stopped"], True),
        (["time left"], True),  # someone else stopped it (e.g. a fit-once task)
        ([], True),
    ],
)
def test_only_a_stop_by_the_time_limit_is_left_out_of_checkpoints(callbacks: list[str], saved: bool) -> None:
    from datetime import timedelta
    from types import SimpleNamespace

    from pytorch_lightning.callbacks import EarlyStopping, Timer

    from train.training.stop_request import StopRequest

    made = {
        "time spent": lambda: Timer(duration=timedelta(0)),
        "time left": lambda: Timer(duration=timedelta(hours=1)),
        "early stopped": lambda: EarlyStopping(monitor="val/ndcg@10"),
    }
    built = [made[name]() for name in callbacks]
    for callback in built:
        if isinstance(callback, EarlyStopping):
            callback.stopped_epoch = 4
    request = StopRequest()
    request.setup(SimpleNamespace(should_stop=True, callbacks=built), None, "fit")
    assert request.state_dict() == {"should_stop": saved}
    request.setup(SimpleNamespace(should_stop=False, callbacks=built), None, "fit")
    assert request.state_dict() == {"should_stop": False}
