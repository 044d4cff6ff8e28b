"""The commands as Hydra users expect them: fast, specific --help, tab completion,
RECFLOW_DATA, conf/local, logger=tensorboard."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.helpers import CONF_DIR
from train.extras import MissingExtraError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TRAINING_GROUPS = ("model:", "trainer:", "curriculum:", "callbacks:", "data:")
# command module -> entry config; each --help must list that config's keys only.
ENTRY_CONFIGS = {"infer": "infer", "serve": "serve", "export": "export", "profiles": "profile", "evaluate": "evaluate"}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        list(args), capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def console_command(name: str) -> str:
    """The installed console script (pip install -e . puts it next to the interpreter)."""
    path = BIN / name
    if not path.is_file():
        pytest.skip(f"{name} is not installed in this environment (pip install -e .)")
    return str(path)


# -- --help --------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [("recflow-train",), ("-m", "train")])
def test_train_help_says_what_recflow_is(command: tuple[str, ...]) -> None:
    args = [console_command(command[0])] if command[0].startswith("recflow") else [sys.executable, *command]
    out = run(*args, "--help").stdout
    assert out.startswith("recflow-train: train a recommender with recflow.")
    assert "NCF" in out and "SASRec" in out and "powered by Hydra" not in out
    assert "debug: fast_dev_run, limit, overfit, profiler" in out
    assert "model: " in out and "neumf" in out and "trainer: " in out


@pytest.mark.parametrize("module", sorted(ENTRY_CONFIGS))
def test_command_help_lists_only_its_own_keys(module: str) -> None:
    out = run(sys.executable, "-m", f"train.cli.{module}", "--help").stdout
    assert out.startswith(f"recflow-{ENTRY_CONFIGS[module]}: ") and "powered by Hydra" not in out
    options = out.split("== Options (key=value) ==")[1].split("== Defaults ==")[0]
    keys = [k for k in OmegaConf.load(ROOT / "conf" / f"{ENTRY_CONFIGS[module]}.yaml") if k not in ("defaults", "hydra")]
    if module == "evaluate":
        keys.append("eval")  # a config group, chosen on the command line
    listed = {line.split()[0] for line in options.splitlines() if line.startswith("  ") and line.split()}
    assert set(keys) <= listed, set(keys) - listed
    assert not [group for group in TRAINING_GROUPS if f"\n{group}" in out]


@pytest.mark.parametrize("module", ["train", "infer", "serve", "export", "profiles", "evaluate", "consolidate"])
def test_commands_import_neither_torch_nor_lightning(module: str) -> None:
    code = (
        f"import sys, train.cli.{module}, train.runs.sweep\n"
        "print('torch' in sys.modules, any(m.split('.')[0] in ('pytorch_lightning', 'lightning') for m in sys.modules))"
    )
    assert run(sys.executable, "-c", code).stdout.split() == ["False", "False"]


def test_precision_resolver_imports_torch_only_when_resolved() -> None:
    from train.training.resolvers import register_resolvers

    register_resolvers()
    assert OmegaConf.create({"p": "${recflow.precision:cpu}"}).p == "32-true"


# -- tab completion ---------------------------------------------------------------------------
def test_bash_completion_installs_for_the_console_command() -> None:
    out = run(console_command("recflow-train"), "--shell-completion", "install=bash").stdout
    assert "hydra_bash_completion()" in out
    assert out.rstrip().endswith("complete -o nospace -o default -F hydra_bash_completion recflow-train")


@pytest.mark.parametrize("line, expected", [("recflow-train mod", "model="), ("recflow-train debug=", "debug=fast_dev_run")])
def test_bash_completion_query_offers_groups_and_options(line: str, expected: str) -> None:
    # What the installed script runs on TAB: COMP_LINE set, the program called with -sc query=bash.
    env = {"COMP_LINE": line, "COMP_POINT": str(len(line))}
    out = run(console_command("recflow-train"), "-sc", "query=bash", env=env).stdout
    assert expected in out.split()


# -- paths.data_dir, conf/local ----------------------------------------------------------------
def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_data_dir_comes_from_recflow_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECFLOW_DATA", str(tmp_path))
    cfg = compose_train("data=movielens")
    assert cfg.paths.data_dir == str(tmp_path) and cfg.data.root == str(tmp_path)
    assert compose_train("data=ncf_split").data.root == f"{tmp_path}/ncf"
    monkeypatch.delenv("RECFLOW_DATA")
    assert compose_train("data=movielens").data.root == "data"
    assert compose_train("data=movielens", "data.root=/elsewhere").data.root == "/elsewhere"


def test_local_config_is_picked_up_when_present(tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "default.yaml").write_text(
        "# @package _global_\npaths:\n  data_dir: /mnt/datasets\ntrainer:\n  max_epochs: 7\n"
    )
    cfg = OmegaConf.create(run(sys.executable, "-m", "train", "--config-dir", str(tmp_path), "--cfg", "job").stdout)
    assert cfg.trainer.max_epochs == 7 and cfg.paths.data_dir == "/mnt/datasets"
    # The command line still wins over the machine's settings.
    cfg = OmegaConf.create(
        run(sys.executable, "-m", "train", "--config-dir", str(tmp_path), "--cfg", "job", "trainer.max_epochs=2").stdout
    )
    assert cfg.trainer.max_epochs == 2


def test_without_a_local_file_nothing_changes() -> None:
    if (ROOT / "conf" / "local" / "default.yaml").exists():
        pytest.skip("this checkout has its own conf/local/default.yaml")
    assert compose_train().trainer.max_epochs == OmegaConf.load(ROOT / "conf" / "trainer" / "default.yaml").max_epochs


# -- logger=tensorboard --------------------------------------------------------------------------
def test_tensorboard_logger_writes_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    import hydra

    cfg = compose_train("logger=tensorboard")
    cfg.paths.output_dir = str(tmp_path)  # as inside a run: the run directory
    logger = hydra.utils.instantiate(cfg.logger)
    logger.log_metrics({"val/ndcg@10": 0.5}, step=0)
    logger.finalize("success")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_tensorboard_without_the_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from train.training import tracking as tensorboard

    real_find_spec = importlib.util.find_spec
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setattr(tensorboard, "find_spec", lambda name: None if name == "tensorboardX" else real_find_spec(name))
    with pytest.raises(MissingExtraError, match=r"logger=tensorboard needs tensorboard: pip install 'recflow\[tensorboard\]'"):
        tensorboard.tensorboard_logger(str(tmp_path))
