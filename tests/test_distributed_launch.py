"""Fast checks of the launch plumbing: run directories, overrides, strategy configs."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from train.runs.consolidate import ConsolidationError, checkpoint_tag_dir, checkpoint_world_size
from train.training.distributed import (
    RUN_DIR_ENV,
    LaunchError,
    detect_launch,
    override_keys,
    prepare_argv,
    publish_run_dir,
)
from train.training.strategies import (
    CPUDeepSpeedStrategy,
    StrategyConfigError,
    auto_precision,
    check_resume_world_size,
    deepspeed,
    deepspeed_config,
    resolve_accelerator,
    single_pass_modules,
)
from recmodels.sasrec import SASRec

CONF = str(Path(__file__).resolve().parents[1] / "conf")
ARGV = ["train", "trainer=ddp", "logger=none"]


def torchrun_env(rank: int, world: int = 2, local_world: int = 2, run_id: str = "abc123", **extra: str) -> dict[str, str]:
    env = {
        "TORCHELASTIC_RUN_ID": run_id,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank % local_world),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(local_world),
        "TORCHELASTIC_USE_AGENT_STORE": "False",
    }
    env.update(extra)
    return env


# -- detecting the launcher -------------------------------------------------------------
def test_detect_launch_reads_each_launcher() -> None:
    launch = detect_launch(torchrun_env(3, world=8, local_world=4))
    assert (launch.launcher, launch.rank, launch.world_size, launch.nodes, launch.devices_per_node) == ("torchrun", 3, 8, 2, 4)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_NNODES": "2", "SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "train"}
    launch = detect_launch(slurm)
    assert (launch.launcher, launch.rank, launch.devices_per_node, launch.job_id) == ("slurm", 5, 8, "77")
    # An interactive allocation with one task is a plain run.
    assert detect_launch({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).launcher == "single"
    assert detect_launch({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}).rank == 1
    assert detect_launch({}).launcher == "single"


def test_override_keys_strips_prefixes() -> None:
    assert override_keys(["+a.b=1", "++c=2", "~d", "trainer=ddp"]) == {"a.b", "c", "d", "trainer"}


# -- one run directory per job ------------------------------------------------------------
def test_plain_run_is_left_alone() -> None:
    assert prepare_argv(ARGV, {}) == ARGV


def test_torchrun_ranks_share_dir_and_only_rank0_writes_hydra_files() -> None:
    rank0 = prepare_argv(ARGV, torchrun_env(0))
    rank1 = prepare_argv(ARGV, torchrun_env(1))
    dirs = {[a for a in argv if a.startswith("hydra.run.dir=")][0] for argv in (rank0, rank1)}
    assert dirs == {"hydra.run.dir=outputs/runs/torchrun-abc123"}
    for argv in (rank0, rank1):
        assert "++trainer.devices=2" in argv and "++trainer.num_nodes=1" in argv
    assert "hydra.output_subdir=null" not in rank0 and "hydra/job_logging=disabled" not in rank0
    assert "hydra.output_subdir=null" in rank1 and "hydra/job_logging=disabled" in rank1


def test_user_choices_win() -> None:
    argv = ARGV + ["hydra.run.dir=/x/y", "trainer.devices=2", "trainer.num_nodes=1"]
    out = prepare_argv(argv, torchrun_env(1))
    assert out.count("hydra.run.dir=/x/y") == 1 and not any(a.startswith("hydra.run.dir=outputs") for a in out)
    assert not any(a.startswith("++trainer.") for a in out)
    out = prepare_argv(ARGV, {**torchrun_env(1), RUN_DIR_ENV: "/shared/run7"})
    assert "hydra.run.dir=/shared/run7" in out


def test_torchrun_without_id_or_store_fails_clearly() -> None:
    with pytest.raises(LaunchError, match="--rdzv-id"):
        prepare_argv(ARGV, torchrun_env(1, run_id="none"))


def test_slurm_ranks_share_dir_named_after_job() -> None:
    env = {"SLURM_PROCID": "1", "SLURM_NTASKS": "4", "SLURM_NNODES": "2", "SLURM_JOB_ID": "991", "SLURM_JOB_NAME": "t"}
    out = prepare_argv(ARGV, env)
    assert "hydra.run.dir=outputs/runs/slurm-991" in out
    assert "++trainer.devices=2" in out and "++trainer.num_nodes=2" in out and "hydra.output_subdir=null" in out


def test_lightning_spawned_child_only_gets_quiet_overrides() -> None:
    argv = ARGV + ["hydra.run.dir=outputs/runs/x", "hydra.output_subdir=null"]
    out = prepare_argv(argv, {"LOCAL_RANK": "1", "WORLD_SIZE": "2", "NODE_RANK": "0"})
    assert out == argv + ["hydra/job_logging=disabled"]


def test_lightning_multinode_needs_explicit_dir() -> None:
    with pytest.raises(LaunchError, match="hydra.run.dir"):
        prepare_argv(ARGV, {"NODE_RANK": "1"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_store_hands_rank0_dir_to_other_ranks() -> None:
    """Rank 1 waits in prepare_argv until rank 0 publishes the directory Hydra resolved."""
    port = _free_port()
    master = torch.distributed.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)
    common = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCHELASTIC_USE_AGENT_STORE": "True"}
    rank0 = prepare_argv(ARGV, torchrun_env(0, **common))
    assert not any(a.startswith("hydra.run.dir=") for a in rank0)  # rank 0 lets Hydra resolve ${now:}
    result: dict[str, list[str]] = {}
    waiter = threading.Thread(target=lambda: result.update(argv=prepare_argv(ARGV, torchrun_env(1, **common))))
    waiter.start()
    publish_run_dir("/runs/2026-01-01_10-00-00", torchrun_env(0, **common))
    waiter.join(timeout=30)
    assert "hydra.run.dir=/runs/2026-01-01_10-00-00" in result["argv"]
    del master


# -- strategies ---------------------------------------------------------------------------
def test_accelerator_and_precision_on_cpu() -> None:
    assert resolve_accelerator("cpu") == "cpu"
    assert auto_precision("cpu") == "32-true"
    with pytest.raises(StrategyConfigError, match="accelerator"):
        resolve_accelerator("tpu")
    if not torch.cuda.is_available():
        assert resolve_accelerator("auto") == "cpu"
        with pytest.raises(StrategyConfigError, match="no CUDA device"):
            resolve_accelerator("gpu")


@pytest.mark.parametrize(
    "zero, match",
    [
        ({"stage": 5}, "stages are 0, 1, 2 or 3"),
        ({"stage": 2, "offload_param": {"device": "cpu"}}, "needs stage=3"),
        ({"stage": 0, "offload_optimizer": {"device": "cpu"}}, "stage 1, 2 or 3"),
    ],
)
def test_bad_deepspeed_settings_are_named(zero: dict, match: str) -> None:
    with pytest.raises(StrategyConfigError, match=match):
        deepspeed_config({"zero_optimization": zero}, on_cpu=True)


def test_gradient_accumulation_belongs_to_the_trainer() -> None:
    with pytest.raises(StrategyConfigError, match="accumulate_grad_batches"):
        deepspeed_config({"gradient_accumulation_steps": 4}, on_cpu=False)


def test_cpu_config_uses_torch_optimizer_and_unpinned_memory() -> None:
    given = {"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu", "pin_memory": True}}}
    cfg = deepspeed_config(given, on_cpu=True)
    assert cfg["zero_force_ds_cpu_optimizer"] is False
    assert cfg["zero_optimization"]["offload_param"]["pin_memory"] is False
    assert given["zero_optimization"]["offload_param"]["pin_memory"] is True  # input untouched
    assert cfg["train_micro_batch_size_per_gpu"] == 1


def test_cpu_deepspeed_strategy_has_indexed_cpu_root_device() -> None:
    strategy = deepspeed("cpu", {"zero_optimization": {"stage": 2}})
    assert isinstance(strategy, CPUDeepSpeedStrategy)
    assert strategy.process_group_backend == "gloo"
    assert strategy.root_device == torch.device("cpu", 0)


TRAINER_CONFIGS = {
    "ddp": None,
    "ddp_cpu": None,
    "deepspeed_zero1": 1,
    "deepspeed_zero2": 2,
    "deepspeed_zero3": 3,
    "deepspeed_zero3_offload": 3,
}


@pytest.mark.parametrize("name, stage", TRAINER_CONFIGS.items())
def test_trainer_configs_build_their_strategy(name: str, stage: int | None) -> None:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=[f"trainer={name}", "logger=none", "trainer.accelerator=cpu"])
    assert cfg.trainer.precision == "32-true"  # fp32 on CPU, bf16-mixed on GPU
    assert cfg.trainer.use_distributed_sampler is False  # inherited from trainer/default.yaml
    strategy = instantiate(cfg.trainer.strategy)
    if stage is None:
        assert strategy.process_group_backend == "gloo"
    else:
        assert strategy.config["zero_optimization"]["stage"] == stage
    if name.endswith("offload"):
        assert strategy.config["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_deepspeed_keys_override_from_command_line() -> None:
    overrides = ["trainer=deepspeed_zero2", "logger=none", "trainer.strategy.config.zero_optimization.stage=3"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert instantiate(cfg.trainer.strategy).config["zero_optimization"]["stage"] == 3


def test_zero3_makes_transformer_encode_in_one_pass() -> None:
    """ZeRO-3 needs the same module calls on every rank; length grouping varies with the data."""
    model = SASRec(num_items=30, hidden=8, num_blocks=1, num_heads=1, max_len=10)
    assert model.encoder.max_groups > 1
    assert single_pass_modules(model) == 1
    assert model.encoder.max_groups == 1
    calls = []
    model.encoder.blocks[0].register_forward_hook(lambda *_: calls.append(1))
    history = torch.tensor([[-1] * 8 + [1, 2], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])  # very different lengths
    model(history)
    assert len(calls) == 1
    assert single_pass_modules(model) == 0  # idempotent


# -- checkpoints --------------------------------------------------------------------------
def fake_zero_checkpoint(root: Path, ranks: int) -> Path:
    ckpt = root / "last.ckpt"
    (ckpt / "checkpoint").mkdir(parents=True)
    (ckpt / "latest").write_text("checkpoint")
    for rank in range(ranks):
        (ckpt / "checkpoint" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"")
    return ckpt


def test_resume_at_other_world_size_names_the_conversion(tmp_path: Path) -> None:
    ckpt = fake_zero_checkpoint(tmp_path, ranks=2)
    assert checkpoint_world_size(ckpt) == 2
    check_resume_world_size(ckpt, 2)  # same size: fine
    with pytest.raises(StrategyConfigError, match="ds_to_universal") as err:
        check_resume_world_size(ckpt, 4)
    assert "recflow-consolidate" in str(err.value) and "written by 2" in str(err.value)


def test_checkpoint_paths_are_checked(tmp_path: Path) -> None:
    ckpt = fake_zero_checkpoint(tmp_path, ranks=1)
    assert checkpoint_tag_dir(ckpt) == ckpt / "checkpoint"
    with pytest.raises(ConsolidationError, match="pass one of: last.ckpt"):
        checkpoint_tag_dir(tmp_path)
    with pytest.raises(ConsolidationError, match="did you mean its parent"):
        checkpoint_tag_dir(ckpt / "checkpoint")
    single = tmp_path / "model.ckpt"
    single.write_bytes(b"")
    with pytest.raises(ConsolidationError, match="need no consolidation"):
        checkpoint_tag_dir(single)
    with pytest.raises(ConsolidationError, match="missing.ckpt does not exist; pass a DeepSpeed checkpoint folder"):
        checkpoint_tag_dir(tmp_path / "missing.ckpt")
