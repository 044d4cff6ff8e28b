"""One job, one run directory: make every rank of a multi-process launch agree on it.

Under ``torchrun`` or ``srun`` every rank runs ``python -m train`` (and so Hydra) on
its own; left alone, each would resolve ``${now:...}`` into its own output directory
and write its own ``.hydra/`` config and ``train.log``. Before Hydra starts,
:func:`prepare_argv` therefore

- gives every rank the same ``hydra.run.dir``: ``RECFLOW_RUN_DIR`` if set; under
  torchrun the directory rank 0 resolved (published through torchrun's own TCP store),
  or one named after the rendezvous id; under SLURM one named after the job id;
- tells Lightning how many processes the launcher started (``trainer.devices`` per
  node, ``trainer.num_nodes``), unless given;
- keeps non-zero ranks quiet: no ``.hydra/`` dump and no log file of their own.

Processes that Lightning itself spawns (``trainer.devices=N`` without a launcher)
already receive rank 0's ``hydra.run.dir``; they only get the quiet overrides.
Everything here but :func:`_store` is a pure function of ``argv`` and the environment.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

RUN_DIR_ENV = "RECFLOW_RUN_DIR"
STORE_KEY = "recflow/run_dir"
STORE_TIMEOUT = timedelta(minutes=10)
QUIET_OVERRIDES = ("hydra.output_subdir=null", "hydra/job_logging=disabled")


class LaunchError(RuntimeError):
    """The launch environment does not say enough to share one run directory."""


@dataclass(frozen=True)
class Launch:
    """Who started this process and where it stands in the job."""

    launcher: str  # "single" | "torchrun" | "slurm" | "lightning"
    rank: int = 0
    world_size: int = 1
    nodes: int = 1
    job_id: str | None = None

    @property
    def devices_per_node(self) -> int:
        return self.world_size // self.nodes

    @property
    def external(self) -> bool:
        """True when a launcher (not Lightning) started every rank, so all run Hydra."""
        return self.launcher in ("torchrun", "slurm") and self.world_size > 1


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    value = env.get(key, "")
    return int(value) if value.strip().lstrip("-").isdigit() else default


def detect_launch(env: Mapping[str, str]) -> Launch:
    """Read the launcher's environment variables (torchrun first, then SLURM's srun)."""
    if "TORCHELASTIC_RUN_ID" in env and "RANK" in env:
        world = _int(env, "WORLD_SIZE", 1)
        per_node = max(_int(env, "LOCAL_WORLD_SIZE", world), 1)
        return Launch("torchrun", _int(env, "RANK", 0), world, max(world // per_node, 1), env["TORCHELASTIC_RUN_ID"])
    if "SLURM_PROCID" in env and _int(env, "SLURM_NTASKS", 1) > 1 and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        job = env.get("SLURM_JOB_ID", "")
        step = env.get("SLURM_STEP_ID")
        job_id = f"{job}-{step}" if step else job
        world = _int(env, "SLURM_NTASKS", 1)
        return Launch("slurm", _int(env, "SLURM_PROCID", 0), world, max(_int(env, "SLURM_NNODES", 1), 1), job_id)
    if "LOCAL_RANK" in env or "NODE_RANK" in env:
        # Lightning's own launcher sets these in the processes it spawns.
        rank = _int(env, "LOCAL_RANK", 0) + _int(env, "NODE_RANK", 0)
        return Launch("lightning", rank, _int(env, "WORLD_SIZE", 1))
    return Launch("single")


def override_keys(argv: Sequence[str]) -> set[str]:
    """Keys the command line already sets (``+key=``, ``++key=`` and ``~key`` included)."""
    keys = set()
    for arg in argv:
        key = arg.split("=", 1)[0].lstrip("+~")
        keys.add(key.removeprefix("override "))
    return keys


def runtime_overrides(argv: Sequence[str], launch: Launch, run_dir: str | None) -> list[str]:
    """Overrides to append for this rank (none for a plain single-process run)."""
    given = override_keys(argv)
    extra: list[str] = []
    if run_dir is not None and "hydra.run.dir" not in given:
        extra.append(f"hydra.run.dir={run_dir}")
    if launch.external:
        if "trainer.devices" not in given:
            extra.append(f"++trainer.devices={launch.devices_per_node}")
        if "trainer.num_nodes" not in given:
            extra.append(f"++trainer.num_nodes={launch.nodes}")
    if launch.rank > 0:
        extra += [o for o in QUIET_OVERRIDES if o.split("=", 1)[0] not in given]
    return extra


def given_run_dir(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg.startswith("hydra.run.dir="):
            return arg.split("=", 1)[1].strip("\"'")
    return None


def shared_run_dir(launch: Launch, env: Mapping[str, str]) -> str | None:
    """The run directory all ranks agree on without talking to each other, if any."""
    if env.get(RUN_DIR_ENV):
        return env[RUN_DIR_ENV]
    if not launch.external:
        return None
    if launch.launcher == "slurm":
        return f"outputs/runs/slurm-{launch.job_id}"
    if launch.job_id and launch.job_id != "none":
        return f"outputs/runs/torchrun-{launch.job_id}"
    raise LaunchError(
        "torchrun was started without a rendezvous id, so the ranks cannot agree on one run "
        "directory; pass --rdzv-id=<job name> to torchrun, or hydra.run.dir=<dir> (or set "
        f"{RUN_DIR_ENV}) on the command line"
    )


def _uses_agent_store(launch: Launch, env: Mapping[str, str]) -> bool:
    return launch.launcher == "torchrun" and launch.world_size > 1 and env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


def _store(env: Mapping[str, str]):  # -> torch.distributed.Store
    """Client of the TCP store torchrun's agent hosts for the whole job."""
    from torch.distributed import PrefixStore, TCPStore

    store = TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False, timeout=STORE_TIMEOUT)
    return PrefixStore(f"{STORE_KEY}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def prepare_argv(argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """``argv`` plus the overrides that make this rank join its job's one run directory.

    Under torchrun, non-zero ranks wait for the directory rank 0 publishes from inside
    Hydra (:func:`publish_run_dir`), so the configured ``hydra.run.dir`` pattern holds.
    """
    env = os.environ if env is None else env
    argv = list(argv)
    launch = detect_launch(env)
    run_dir = given_run_dir(argv[1:]) or (env.get(RUN_DIR_ENV) or None)
    if run_dir is None and launch.launcher == "lightning" and _int(env, "NODE_RANK", 0) > 0:
        raise LaunchError(
            f"node {env['NODE_RANK']} of a multi-node run cannot know node 0's run directory; pass the "
            f"same hydra.run.dir=<shared dir> (or set {RUN_DIR_ENV}) on every node"
        )
    if run_dir is None and launch.external:
        if _uses_agent_store(launch, env):
            run_dir = None if launch.rank == 0 else _store(env).get("dir").decode()
        else:
            run_dir = shared_run_dir(launch, env)
    return argv + runtime_overrides(argv[1:], launch, run_dir)


def publish_run_dir(output_dir: str, env: Mapping[str, str] | None = None) -> None:
    """On torchrun's rank 0: tell the other ranks (waiting in :func:`prepare_argv`) the run directory."""
    env = os.environ if env is None else env
    launch = detect_launch(env)
    if launch.rank == 0 and _uses_agent_store(launch, env) and not env.get(RUN_DIR_ENV):
        _store(env).set("dir", output_dir)
