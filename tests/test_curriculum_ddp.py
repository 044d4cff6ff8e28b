"""Two DDP ranks on CPU: same schedule, same model-based scores, disjoint shards, no hang.

Lightning's DDP launcher re-executes the main script, so the training runs in a small
script of its own (written to a temporary folder), never inside pytest.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4

SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
import numpy as np, pandas as pd, torch, pytorch_lightning as pl
from data_modules.interactions import TEST, TRAIN, VAL, InteractionData
from data_modules.pairs import PairDataModule
from recmodels.ncf import GMF
from train.curriculum import CurriculumCallback, NegativeHardness, SelfPacedLoss
from train.evaluation import Evaluator
from train.training.tasks import PointwiseTask


class Dump(pl.Callback):
    def __init__(self):
        self.rows = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pos = batch["label"] == 1
        self.rows.append([trainer.current_epoch, trainer.global_step, batch["user"][pos].tolist(), batch["item"][pos].tolist()])

    def on_train_end(self, trainer, pl_module):
        cur = next(c for c in trainer.callbacks if isinstance(c, CurriculumCallback)).curriculum
        state = {{"step": cur.scheduler.step, "scores": cur.scores.tolist(), "cache": cur.knobs[0].sampler.cache.tolist()}}
        with open({out!r} + f"/rank{{trainer.global_rank}}.json", "w") as f:
            json.dump({{"rows": self.rows, "state": state}}, f)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 51)
    rows = []
    for user in range(60):
        items = rng.choice(50, size=int(rng.integers(5, 12)), replace=False, p=weights / weights.sum())
        splits = [TRAIN] * (len(items) - 2) + [VAL, TEST]
        rows += [(user, int(i), t, s) for t, (i, s) in enumerate(zip(items, splits))]
    data = InteractionData(pd.DataFrame(rows, columns=["user", "item", "timestamp", "split"]), np.arange(60), np.arange(50))
    pl.seed_everything(0)
    evaluator = Evaluator(protocol="full", ks=(5,), metrics=("ndcg",))
    module = PairDataModule(data, evaluator.spec, batch_size=16, num_negatives=2, seed=1)
    task = PointwiseTask(GMF(60, 50, 4), evaluator, optimizer=lambda params: torch.optim.Adam(params, lr=0.01))
    curriculum = CurriculumCallback(
        {{"name": "linear", "start": 0.3, "ramp_epochs": 2}}, difficulty=SelfPacedLoss(),
        knobs={{"negatives": NegativeHardness(hard_from=0.2, refresh_steps=3, candidates=20, top_k=4)}},
    )
    trainer = pl.Trainer(
        max_epochs={epochs}, accelerator="cpu", devices=2, strategy="ddp", callbacks=[curriculum, Dump()],
        logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        use_distributed_sampler=False, num_sanity_val_steps=0,
    )
    trainer.fit(task, datamodule=module)
"""


def test_two_ranks_share_the_schedule_and_split_the_pool(tmp_path: Path) -> None:
    script = tmp_path / "ddp_curriculum.py"
    script.write_text(SCRIPT.format(root=str(ROOT), out=str(tmp_path), epochs=EPOCHS))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["state"] == ranks[1]["state"]  # step, self-paced scores and hard-negative cache
    sizes = []
    for epoch in range(EPOCHS):
        batches = [[row for row in rank["rows"] if row[0] == epoch] for rank in ranks]
        assert [b[1] for b in batches[0]] == [b[1] for b in batches[1]]  # ranks step in lockstep
        pairs = [{(u, i) for row in b for u, i in zip(row[2], row[3])} for b in batches]
        assert not pairs[0] & pairs[1]  # disjoint shards of the pool
        sizes.append(len(pairs[0]) + len(pairs[1]))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # the pool grows with competence
