"""Continue an interrupted run in its own folder: ``recflow-train resume=RUN_DIR [overrides]``.

Before Hydra starts, :func:`resume_argv` turns ``resume=RUN_DIR`` into the run's own
command line: the overrides it was started with (``RUN_DIR/.hydra/overrides.yaml``), then
the new ones given next to ``resume=`` (applied on top, e.g. ``trainer.max_epochs=20`` to
train longer), then ``resume=``, ``hydra.run.dir=RUN_DIR`` and
``ckpt_path=RUN_DIR/checkpoints/last.ckpt`` (so the saved config records the resume).
So Hydra writes into the same folder, Lightning restores the optimizer, loop, early
stopping and best-checkpoint bookkeeping (its ``dirpath`` is unchanged), and the tracker
finds the run id stored there (:mod:`train.training.tracking`). New overrides that would
make it another run (``model=``, ``data=``, another folder or checkpoint) are refused.

``ckpt_path=<run>/checkpoints/<file>`` without ``hydra.run.dir`` continues in that run's
folder as well (with the overrides given, not the saved ones). Every rank of a torchrun
job reads the same files and so joins the same folder.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_modules.paths import expand_path

RESUME_KEY = "resume"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
# Keys the resumed run takes from its folder: a new value would make it another run.
FIXED_KEYS = {
    "hydra.run.dir": "the run continues in its own folder",
    "ckpt_path": f"resume= continues from <run>/{LAST_CHECKPOINT.as_posix()}; to start from another "
                 "checkpoint use ckpt_path=<file> without resume=",
    "model": "the checkpoint holds that run's model; train another model as a new run (init_from=<run> "
             "warm-starts one)",
    "data": "the run's id maps and splits come from its data; train on other data as a new run "
            "(init_from=<run> with incremental=update continues on new interactions)",
}
MULTIRUN_FLAGS = ("-m", "--multirun")
_PLAIN_VALUE = re.compile(r"[\w./~:+@-]+")


class ResumeError(ValueError):
    """``resume=`` or ``ckpt_path=`` names no run that can be continued."""


def override_key(arg: str) -> str:
    """``trainer.max_epochs`` for ``++trainer.max_epochs=3``; ``model`` for ``model=gmf``."""
    return arg.split("=", 1)[0].lstrip("+~").removeprefix("override ").strip()


def _value(arg: str) -> str:
    return arg.split("=", 1)[1].strip().strip("\"'") if "=" in arg else ""


def _quoted(path: Path) -> str:
    """A path as a Hydra override value (quoted when it holds spaces or grammar characters)."""
    text = str(path)
    if _PLAIN_VALUE.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _note(message: str) -> None:
    """Tell the user once per job (rank 0), before logging exists."""
    from train.training.distributed import detect_launch

    if detect_launch(os.environ).rank == 0:
        print(f"recflow: {message}", file=sys.stderr)


def check_run_dir(value: str) -> Path:
    """The run folder ``resume=value`` names, or a :class:`ResumeError` saying what is wrong."""
    if not value:
        raise ResumeError("resume= needs a run folder: resume=outputs/runs/<date>_<time>_<model>_<data>")
    run_dir = expand_path(value)
    if not run_dir.is_dir():
        raise ResumeError(f"resume={value}: no such folder; pass the folder of the interrupted run "
                          "(outputs/runs/<date>_<time>_<model>_<data>)")
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        jobs = sorted(p.parent.parent.name for p in run_dir.glob("*/.hydra/overrides.yaml"))
        hint = f"; a multirun folder: resume one of its jobs, e.g. resume={run_dir / jobs[0]}" if jobs else ""
        raise ResumeError(f"resume={value} is not a run folder (no .hydra/overrides.yaml){hint}")
    if not (run_dir / LAST_CHECKPOINT).exists():
        raise ResumeError(
            f"resume={value}: {run_dir / LAST_CHECKPOINT} does not exist, so there is nothing to continue "
            "(the run stopped before its first epoch ended, or ran with callbacks.model_checkpoint.save_last="
            "false); start it again without resume="
        )
    return run_dir.resolve()


def saved_overrides(run_dir: Path) -> list[str]:
    """The overrides the run was started (or last resumed) with, minus its checkpoint."""
    from omegaconf import OmegaConf

    saved = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
    if not isinstance(saved, list):
        raise ResumeError(f"{run_dir / '.hydra' / 'overrides.yaml'} is not a list of overrides; was it edited?")
    return [str(arg) for arg in saved if override_key(str(arg)) not in ("ckpt_path", RESUME_KEY)]


def merge_overrides(saved: Sequence[str], new: Sequence[str]) -> list[str]:
    """``saved`` with each key that ``new`` sets replaced in place (so Hydra sees it once)."""
    merged = list(saved)
    position = {override_key(arg): i for i, arg in enumerate(merged)}
    for arg in new:
        key = override_key(arg)
        if key in position and not arg.startswith(("+", "~")) and merged[position[key]].startswith("+"):
            arg = "++" + arg  # the saved run added this key; keep adding-or-setting it
        if key in position:
            merged[position[key]] = arg
        else:
            position[key] = len(merged)
            merged.append(arg)
    return merged


def saved_value(run_dir: Path, key: str) -> str | None:
    """What the run used for ``key``: its folder, its last checkpoint, or its config choice."""
    from omegaconf import OmegaConf

    if key == "hydra.run.dir":
        return str(run_dir)
    if key == "ckpt_path":
        return str(run_dir / LAST_CHECKPOINT)
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    choice = OmegaConf.select(OmegaConf.load(hydra_file), f"hydra.runtime.choices.{key}") if hydra_file.is_file() else None
    return None if choice is None else str(choice)


def _same(key: str, value: str, saved: str | None) -> bool:
    if saved is None:
        return False
    if key in ("hydra.run.dir", "ckpt_path"):
        return expand_path(value).resolve() == Path(saved)
    return value == saved


def fixed_keys_kept(run_dir: Path, new: Sequence[str]) -> list[str]:
    """``new`` without the overrides that repeat the run's own folder, checkpoint, model or
    data (a pasted original command line); any other value for them is refused."""
    kept = []
    for arg in new:
        key = override_key(arg)
        if key not in FIXED_KEYS:
            kept.append(arg)
        elif not _same(key, _value(arg), saved_value(run_dir, key)):
            raise ResumeError(f"resume={run_dir} does not take {arg!r}: {FIXED_KEYS[key]}")
    return kept


def is_override(arg: str) -> bool:
    """``key=value`` or ``~key`` (flags such as ``--cfg job`` and their values are not)."""
    return not arg.startswith("-") and ("=" in arg or arg.startswith("~"))


def expand_resume(args: Sequence[str], value: str) -> list[str]:
    """The command line of the run in folder ``value``, with ``args`` applied on top."""
    if any(arg in MULTIRUN_FLAGS for arg in args):
        raise ResumeError("resume= continues one run; drop -m/--multirun (resume each job folder on its own)")
    run_dir = check_run_dir(value)
    flags = [arg for arg in args if not is_override(arg)]
    new = [arg for arg in args if is_override(arg)]
    new = fixed_keys_kept(run_dir, new)
    if new:
        _note(f"resuming {run_dir} with new overrides on top of its own: {' '.join(new)}")
    overrides = merge_overrides(saved_overrides(run_dir), new)
    # hydra.mode=RUN: a sweep's job (e.g. hparams_search=..., which sets MULTIRUN) resumes as one run.
    return [*flags, *overrides, f"{RESUME_KEY}={_quoted(run_dir)}", f"hydra.run.dir={_quoted(run_dir)}",
            f"ckpt_path={_quoted(run_dir / LAST_CHECKPOINT)}", "hydra.mode=RUN"]


def checkpoint_run_dir(checkpoint: str) -> Path | None:
    """The run folder holding ``checkpoint`` (``<run>/checkpoints/<file>``), if it is in one."""
    path = expand_path(checkpoint)
    run_dir = path.parent.parent
    if path.parent.name == "checkpoints" and (run_dir / ".hydra").is_dir():
        return run_dir.resolve()
    return None


def continue_in_checkpoint_folder(args: Sequence[str]) -> list[str]:
    """``ckpt_path=<run>/checkpoints/...`` alone: continue in ``<run>`` rather than a new folder."""
    keys = {override_key(arg) for arg in args}
    checkpoint = next((_value(arg) for arg in args if override_key(arg) == "ckpt_path"), "")
    if not checkpoint or checkpoint == "null" or "hydra.run.dir" in keys or any(a in MULTIRUN_FLAGS for a in args):
        return list(args)
    run_dir = checkpoint_run_dir(checkpoint)
    if run_dir is None:
        _note(f"ckpt_path={checkpoint} is not inside a run folder, so this run starts a new one and its "
              "best-checkpoint bookkeeping starts afresh; resume=<run folder> continues a run in place")
        return list(args)
    _note(f"ckpt_path is inside {run_dir}: continuing in that folder "
          f"(resume={run_dir} would also reuse the run's own overrides)")
    return [*args, f"hydra.run.dir={_quoted(run_dir)}"]


def resume_checkpoint(cfg: Any) -> str | None:
    """The checkpoint ``fit`` starts from: ``ckpt_path``, else ``<resume>/checkpoints/last.ckpt``
    (a config composed in Python, where no command line expanded ``resume=``)."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    if cfg.get(RESUME_KEY):
        return str(check_run_dir(str(cfg[RESUME_KEY])) / LAST_CHECKPOINT)
    return None


def resume_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``resume=RUN_DIR`` expanded into that run's command line (see module doc)."""
    program, args = argv[0], list(argv[1:])
    resumes = [arg for arg in args if override_key(arg) == RESUME_KEY and _value(arg) != "null"]
    if not resumes:
        return [program, *continue_in_checkpoint_folder(args)]
    if len(resumes) > 1:
        raise ResumeError(f"resume= given {len(resumes)} times; continue one run at a time")
    rest = [arg for arg in args if arg not in resumes]
    return [program, *expand_resume(rest, _value(resumes[0]))]
