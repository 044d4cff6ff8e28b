"""scripts/ncf_pretrain.py end to end on a tiny split in NCF's published format."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
USERS, ITEMS, PER_USER, NEGATIVES = 40, 125, 12, 99


def write_split(folder: Path) -> Path:
    """train/test/negative files like NCF's ml-1m ones: the test item is each user's latest."""
    rng = np.random.default_rng(0)
    histories = [rng.choice(ITEMS, PER_USER + 1, replace=False) for _ in range(USERS)]
    rated = np.unique(np.concatenate(histories))  # negatives must be items the files know
    train, test, negative = [], [], []
    for user, items in enumerate(histories):
        train += [f"{user}\t{item}\t4\t{100 + t}" for t, item in enumerate(items[:-1])]
        test.append(f"{user}\t{items[-1]}\t5\t{200}")
        pool = np.setdiff1d(rated, items)
        negative.append(f"({user},{items[-1]})\t" + "\t".join(map(str, rng.choice(pool, NEGATIVES, replace=False))))
    for suffix, lines in (("train.rating", train), ("test.rating", test), ("test.negative", negative)):
        (folder / f"ml-1m.{suffix}").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.slow
def test_runs_every_stage_and_feeds_the_checkpoints_to_neumf(tmp_path: Path) -> None:
    (tmp_path / "ncf").mkdir()
    root, out = write_split(tmp_path / "ncf"), tmp_path / "out"
    cmd = [
        sys.executable, "scripts/ncf_pretrain.py", "--root", str(root), "--out", str(out),
        "--gmf-args", "model.task.embedding_l2=0.01", "trainer.max_epochs=1", "num_threads=1",
        f"data.cache_dir={tmp_path / 'cache'}", "model.datamodule.batch_size=64",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("| ") and "HR@10" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["GMF", "MLP", "NeuMF", "NeuMF (pre-trained)"]

    def config(stage: str) -> dict:
        return yaml.safe_load((out / stage / ".hydra" / "config.yaml").read_text())

    assert config("gmf")["model"]["task"]["embedding_l2"] == 0.01  # a GMF-only override
    assert config("mlp")["model"]["task"]["embedding_l2"] == 0.001  # the experiment's
    pretrained = config("neumf_pretrained")
    assert pretrained["model"]["task"]["embedding_l2"] == 0.0  # the paper's plain fine-tuning
    assert Path(pretrained["gmf_ckpt"]).parent == out / "gmf" / "checkpoints"
    assert Path(pretrained["mlp_ckpt"]).parent == out / "mlp" / "checkpoints"
    assert pretrained["model"]["task"]["optimizer"]["_target_"] == "torch.optim.SGD"
