"""Every command in README.md's ```bash blocks works as written.

Each command line is classified. Training commands compose the real config with the
README's overrides (a renamed key or group fails here), and the single-process ones
train at tiny scale; the run tools (``recflow-infer/-export/-serve/-profile/-evaluate``)
compose theirs and infer/profile run on a tiny run; torchrun, multi-GPU and ``make`` lines compose without
launching anything; scripts must exist and know their flags. Files the README names
(``PATH/ml-1m.txt``, ``$HOME/data/ml-1m``, ``clicks.parquet``, ...) are generated in a
temporary folder that stands in for the user's current folder and home. A line no rule
knows fails, so a new README command gets covered here; only :data:`ALLOWLIST` lines
are exempt, each with its reason.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from tests.helpers import CONF_DIR, TINY_DATA
from tests.test_data_movielens import ratings_lines, write_1m
from tests.test_ncf_pretrain_script import write_split

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"

RUN_NAME = "tiny"  # stands in for <run> in outputs/runs/<run>
TOOLS = {"recflow-infer": "infer", "recflow-export": "export", "recflow-serve": "serve",
         "recflow-profile": "profile", "recflow-evaluate": "evaluate"}  # fmt: skip
SETUP = ("mkdir", "printf")  # shell lines that only write files into the current folder
# Lines that cannot run here at all, by their first words, with the reason.
ALLOWLIST = {
    ("pip", "install"): "installs packages from the network into the active environment",
    ("DS_BUILD_OPS=0", "pip", "wheel"): "downloads and builds wheels from the network",
}
# Appended to every training command that runs: one short epoch, one thread, no tracker.
TINY_RUN = [
    "logger=none", "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1",
    "trainer.enable_progress_bar=false", "trainer.max_time=null", "num_threads=1",
]  # fmt: skip


# --- reading the README --------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One README command: its first line number, its text, its words (comments dropped)."""

    line: int
    text: str
    argv: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"L{self.line}:{' '.join(self.argv[:3])}"


def bash_lines(markdown: str) -> list[tuple[int, str]]:
    """(line number, line) of every line inside a ```bash block."""
    out, language = [], None
    for number, line in enumerate(markdown.splitlines(), start=1):
        fence = re.match(r"^\s*```(\S*)", line)
        if fence:
            language = fence.group(1) if language is None else None
        elif language == "bash":
            out.append((number, line))
    return out


def readme_commands(markdown: str) -> list[Command]:
    """Commands of the bash blocks: ``\\`` continuations joined, comment lines dropped."""
    commands, parts, start = [], [], 0
    for number, line in bash_lines(markdown):
        if not parts:
            start = number
        parts.append(line.rstrip().removesuffix("\\"))
        if line.rstrip().endswith("\\"):
            continue
        text = " ".join(p.strip() for p in parts)
        parts = []
        argv = tuple(shlex.split(text, comments=True))
        if argv:
            commands.append(Command(start, text, argv))
    return commands


def kind_of(argv: tuple[str, ...]) -> str:
    """What a command is, so the test knows how to check it; ``unknown`` fails the test."""
    first = argv[0]
    if argv[:3] == ("python", "-m", "train") or first == "recflow-train":
        return "train"
    if first == "torchrun":
        return "torchrun"
    if first in TOOLS:
        return "tool"
    if first == "recflow-consolidate":
        return "consolidate"
    if first == "make":
        return "make"
    if first == "python" and len(argv) > 1 and argv[1].startswith("scripts/"):
        return "script"
    if first in SETUP:
        return "setup"
    if allowlisted(argv):
        return "allowlisted"
    return "unknown"


def allowlisted(argv: tuple[str, ...]) -> str | None:
    """The reason a line is exempt, or None."""
    return next((why for words, why in ALLOWLIST.items() if argv[: len(words)] == words), None)


COMMANDS = readme_commands(README.read_text())


def of_kind(*kinds: str) -> list:
    return [pytest.param(c, id=c.id) for c in COMMANDS if kind_of(c.argv) in kinds]


# --- the user's folder: files the README names ---------------------------------------


def write_sequences(path: Path, users: int = 60, items: int = 200, seed: int = 0) -> Path:
    """A SASRec-style ``user item`` file, each user 8-15 distinct items in time order."""
    rng = np.random.default_rng(seed)
    lines = [
        f"{user} {item}"
        for user in range(1, users + 1)
        for item in rng.choice(np.arange(1, items + 1), rng.integers(8, 16), replace=False)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_clicks(path: Path, users: int = 60, items: int = 80, seed: int = 1) -> Path:
    """A click log with string ids (``uid``, ``sku``) and a time column ``ts``."""
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"sku{i}") for u in range(users) for i in rng.choice(items, 10, replace=False)]
    frame = pd.DataFrame(rows, columns=["uid", "sku"])
    frame["ts"] = np.arange(len(frame)) + 1_700_000_000
    frame.to_parquet(path)
    return path


def movielens_ratings(per_user: int = 15, seed: int = 2) -> list[str]:
    """``ratings.dat`` lines of the 5 users and 40 movies :func:`write_1m` describes, each
    user rating a subset (a user who rated everything leaves no negatives to sample)."""
    rng = np.random.default_rng(seed)
    lines = ratings_lines("::")
    return [lines[u * 40 + i] for u in range(5) for i in sorted(rng.choice(40, per_user, replace=False))]


def make_folder(folder: Path) -> Path:
    """Every data file the README's commands name, relative to ``folder`` (the cwd) and its
    ``home/`` (``$HOME``), plus the results of the README's set-up shell lines."""
    home = folder / "home"
    write_sequences(folder / "my_log.txt")
    write_sequences(folder / "FILE")
    write_sequences(folder / "PATH" / "ml-1m.txt")
    write_sequences(home / "data" / "ml-1m.txt")
    write_clicks(folder / "clicks.parquet")
    (folder / "PATH" / "ncf").mkdir(parents=True)
    write_split(folder / "PATH" / "ncf")
    write_1m(home / "data" / "ml-1m", movielens_ratings())
    for command in COMMANDS:
        if kind_of(command.argv) == "setup":
            subprocess.run(command.text, shell=True, cwd=folder, check=True)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("user"))


@pytest.fixture
def cwd(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the user's folder, with ``$HOME`` pointing at its ``home/``."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HOME", str(folder / "home"))
    return folder


def shell_words(argv: tuple[str, ...]) -> list[str]:
    """The words as a shell passes them on: ``$VAR`` expanded; ``...`` and ``KEY=...``
    (the README's "and so on") dropped; ``<run>`` is the tiny run."""
    words = [os.path.expandvars(w).replace("<run>", RUN_NAME) for w in argv]
    return [w for w in words if w != "..." and not w.endswith("=...")]


# --- composing -------------------------------------------------------------------------


@dataclass
class TrainArgs:
    overrides: list[str]
    multirun: bool = False
    config_dir: str | None = None


def train_args(words: list[str]) -> TrainArgs:
    """Overrides and Hydra flags of ``python -m train``/``recflow-train``/``torchrun ... -m train``."""
    if words[0] == "torchrun":
        start = next(i for i in range(len(words) - 1) if words[i : i + 2] == ["-m", "train"])
        words = words[start + 2 :]
    else:
        words = words[3:] if words[0] == "python" else words[1:]
    args = TrainArgs([])
    rest = iter(words)
    for word in rest:
        if word in ("-m", "--multirun"):
            args.multirun = True
        elif word == "--config-dir":
            args.config_dir = next(rest)
        elif word.startswith("--config-dir="):
            args.config_dir = word.split("=", 1)[1]
        elif word.startswith("-"):
            raise AssertionError(f"unknown flag {word}: teach tests/test_readme.py what it does")
        else:
            args.overrides.append(word)
    return args


def compose_config(name: str, overrides: list[str], config_dir: str | None = None,
                   hydra_node: bool = False) -> DictConfig:  # fmt: skip
    """``name``.yaml composed as the command would; ``config_dir`` as ``--config-dir``."""
    if config_dir:
        overrides = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]", *overrides]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=hydra_node)


def check_train_config(args: TrainArgs) -> DictConfig:
    """Compose; a sweep's parameters must be keys of the config."""
    if any(o.startswith("hparams_search=") for o in args.overrides):
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_config("train", args.overrides, args.config_dir, hydra_node=True)
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    for key in params:
        assert OmegaConf.select(cfg, key) is not None, f"the sweep varies {key}, which the config lacks"
    return cfg


def make_recipes(target: str) -> list[list[str]]:
    """The ``recflow-train`` lines of a Makefile target, as words after the command."""
    text = MAKEFILE.read_text()
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)*)", text, flags=re.M)
    assert match, f"Makefile has no target {target!r}"
    lines = [line.split("recflow-train", 1)[1] for line in match.group(1).splitlines() if "recflow-train" in line]
    return [shlex.split(line) for line in lines]


def check_make(words: list[str]) -> None:
    """The target exists; each of its trainings composes with the line's ``ARGS``."""
    targets = [w for w in words[1:] if "=" not in w]
    variables = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    extra = shlex.split(variables.get("ARGS", ""))
    for target in targets:
        for recipe in make_recipes(target):
            overrides = [o for o in recipe if o != "$(ARGS)"] + (extra if "$(ARGS)" in recipe else [])
            check_train_config(TrainArgs(overrides))


def check_script(words: list[str]) -> None:
    """The script exists, declares every ``--flag`` used, the named files exist and the
    Hydra overrides it passes on compose."""
    script = ROOT / words[1]
    assert script.is_file(), f"{words[1]} does not exist"
    source = script.read_text()
    args = words[2:]
    for word in args:
        if word.startswith("--") and word != "--":
            assert f'"{word.split("=")[0]}"' in source, f"{words[1]} has no option {word}"
    overrides = [w for w in args if "=" in w and not w.startswith("-")]
    # Files the user brings must be there; a run folder is the user's earlier training.
    paths = [w for w in args if "/" in w and "=" not in w and not w.startswith(("-", "outputs/"))]
    for path in paths:
        assert Path(path).exists(), f"{path} (named by {words[1]}) is missing from the test folder"
    if overrides:
        check_train_config(TrainArgs(overrides))


def check_consolidate(words: list[str]) -> None:
    """The arguments parse; the command then stops on the missing DeepSpeed folder."""
    from train.cli.consolidate import main

    with pytest.raises(SystemExit) as stop:
        main(words[1:])
    assert str(stop.value.code).startswith("error:"), stop.value.code  # not an argparse usage error


def test_every_readme_command_is_classified() -> None:
    unknown = [c.text for c in COMMANDS if kind_of(c.argv) == "unknown"]
    assert not unknown, (
        f"README commands tests/test_readme.py does not know how to check: {unknown}; "
        "add a rule (or, if it truly cannot run in a test, an ALLOWLIST entry with the reason)"
    )
    assert len(of_kind("train")) >= 10, "the README's training examples were not found"
    unused = [words for words in ALLOWLIST if not any(c.argv[: len(words)] == words for c in COMMANDS)]
    assert not unused, f"ALLOWLIST entries no README command uses: {unused}"


@pytest.mark.parametrize(
    "command", of_kind("train", "torchrun", "tool", "consolidate", "make", "script")
)
def test_readme_command_composes(command: Command, cwd: Path) -> None:
    words = shell_words(command.argv)
    kind = kind_of(command.argv)
    if kind in ("train", "torchrun"):
        check_train_config(train_args(words))
    elif kind == "tool":
        compose_config(TOOLS[words[0]], words[1:])
    elif kind == "make":
        check_make(words)
    elif kind == "script":
        check_script(words)
    else:
        check_consolidate(words)


# --- running at tiny scale -------------------------------------------------------------


def one_process(cfg: DictConfig, args: TrainArgs) -> bool:
    """Whether the command trains in this one CPU process (no sweep, strategy or GPU)."""
    trainer = cfg.trainer
    return not args.multirun and "strategy" not in trainer and trainer.devices == 1 and (
        trainer.accelerator in ("auto", "cpu")
    )


def tiny_train_config(args: TrainArgs, output_dir: Path) -> DictConfig:
    """The command's config at tiny scale, writing into ``output_dir``."""
    synthetic = compose_config("train", args.overrides, args.config_dir).data._target_.endswith("synthetic")
    tiny = [*(TINY_DATA if synthetic else []), *TINY_RUN]
    cfg = compose_config("train", [*args.overrides, *tiny], args.config_dir)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def run_training(cfg: DictConfig) -> dict:
    from train.training.config_checks import check_config
    from train.training.run import train

    check_config(cfg)
    return train(cfg)


@pytest.fixture(scope="module")
def tiny_run(folder: Path) -> Path:
    """outputs/runs/<run>: the README's plain ``python -m train`` at tiny scale."""
    output = folder / "outputs" / "runs" / RUN_NAME
    run_training(tiny_train_config(TrainArgs([]), output))
    return output


def setting(cfg: DictConfig, args: TrainArgs) -> tuple:
    """What makes a training different beyond scalar values (which composing checks):
    the option of every config group, a resume, a warm start, a config folder."""
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    groups = tuple(sorted((k, str(v)) for k, v in choices.items() if not k.startswith("hydra")))
    return (groups, bool(cfg.get("ckpt_path")), bool(cfg.get("init_from")), args.config_dir)


TRAINED: dict[tuple, int] = {}  # setting -> README line that trained it


@pytest.mark.slow
@pytest.mark.parametrize("command", of_kind("train"))
def test_readme_training_runs(command: Command, cwd: Path, tiny_run: Path) -> None:
    output = cwd / "outputs" / "runs" / f"line{command.line}"
    args = train_args(shell_words(command.argv))
    composed = check_train_config(args)
    if not one_process(composed, args):
        pytest.skip("multi-process, multi-GPU or a sweep: composed only")
    if any(o.startswith("resume=") for o in args.overrides):
        pytest.skip("resume: composed only (tests/test_resume.py resumes real runs end to end)")
    first = TRAINED.setdefault(setting(composed, args), command.line)
    if first != command.line:
        pytest.skip(f"the setting of README line {first}, trained there; composed only")
    metrics = run_training(tiny_train_config(args, output))
    assert 0.0 <= metrics["test/ndcg@10"] <= 1.0
    assert (output / "metrics.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("command", of_kind("tool"))
def test_readme_tool_runs(command: Command, cwd: Path, tiny_run: Path) -> None:
    words = shell_words(command.argv)
    name = TOOLS[words[0]]
    if name not in ("infer", "profile"):
        pytest.skip(f"recflow-{name}: composed only (its own tests run it)")
    cfg = compose_config(name, words[1:])
    if name == "infer":
        from train.serving.infer import run_infer as run
    else:
        from train.serving.profiles import run_profile as run
    out = run(cfg)
    assert Path(out).is_file() and len(pd.read_parquet(out)) > 0
