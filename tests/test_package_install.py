"""The package as users install it: a wheel with the configs inside and console commands.

The slow tests build the wheel from the checkout's files, install it into a fresh virtual
environment outside the checkout and run the commands from a temporary folder, so they
see only what the wheel ships. The heavy dependencies are not downloaded again: a .pth
file in the new environment appends this interpreter's site-packages to ``sys.path``,
after the environment's own site-packages, so the installed copy of ``train``,
``recmodels`` and ``data_modules`` wins over any other.

The fast tests check that a missing optional package names the extra that installs it.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import TINY_DATA, tiny_config
from train.extras import MissingExtraError, check_sweeper_installed, require
from train.training.config_checks import check_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("train", "recmodels", "data_modules")
COMMANDS = ("recflow-train", "recflow-evaluate", "recflow-infer", "recflow-serve", "recflow-export", "recflow-profile", "recflow-consolidate")
TINY_RUN = [*TINY_DATA, "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "eval.ks=[5,10]", "num_threads=1"]
# A user's own config group file, found through --config-dir: GMF with its own name.
USER_MODEL = """\
defaults:
  - gmf
  - _self_
name: my_gmf
net:
  embed_dim: 8
"""


@dataclass
class Installed:
    """A fresh environment holding the wheel, and a folder outside the checkout to run in."""

    env: Path
    site_packages: Path
    workdir: Path

    def command(self, name: str) -> str:
        return str(self.env / "bin" / name)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args), cwd=self.workdir, env=clean_env(), capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result


# -- building and installing ----------------------------------------------------------------
def clean_env() -> dict[str, str]:
    """This process's environment without anything that would put the checkout on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(WANDB_MODE="disabled", WANDB_SILENT="true", PYTHONNOUSERSITE="1", HYDRA_FULL_ERROR="1")
    return env


def checkout_files() -> list[str]:
    """What a clean checkout holds (tracked plus new, unignored files): no build leftovers."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def copy_checkout(dest: Path) -> Path:
    """A copy to build from: the build writes build/ and *.egg-info next to the sources."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        skip = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", "outputs")
        shutil.copytree(ROOT, dest, ignore=skip)
        return dest
    for name in checkout_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return dest


def build_wheel(src: Path, out: Path) -> Path:
    """The wheel, built offline with this environment's setuptools."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True, capture_output=True, env=clean_env(),
    )
    (wheel,) = out.glob("recflow-*.whl")
    return wheel


def env_site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def dependency_paths() -> list[str]:
    """This interpreter's site-packages (where torch, Lightning, Hydra... are), never the checkout."""
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return sorted(p for p in paths if Path(p).is_dir() and Path(p).resolve() != ROOT.resolve())


def install(wheel: Path, env: Path) -> Path:
    """Install the wheel alone into a new environment, then expose the dependencies."""
    venv.create(env, with_pip=False, symlinks=os.name != "nt")
    python = env / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, env=clean_env(),
    )
    site_packages = env_site_packages(python)
    # Written after the install, so pip saw an empty environment.
    (site_packages / "zz_test_dependencies.pth").write_text("\n".join(dependency_paths()) + "\n")
    return site_packages


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("package")
    wheel = build_wheel(copy_checkout(base / "src"), base / "dist")
    site_packages = install(wheel, base / "env")
    workdir = base / "work"
    workdir.mkdir()
    return Installed(base / "env", site_packages, workdir)


@pytest.fixture(scope="module")
def user_run(installed: Installed) -> Path:
    """One tiny training run of a user's own model config (``--config-dir``)."""
    user_conf = installed.workdir / "my_conf"
    (user_conf / "model").mkdir(parents=True)
    (user_conf / "model" / "my_gmf.yaml").write_text(USER_MODEL)
    run_dir = installed.workdir / "runs" / "my_gmf"
    installed.run(
        installed.command("recflow-train"), "--config-dir", str(user_conf), "model=my_gmf", *TINY_RUN,
        "logger=csv", f"hydra.run.dir={run_dir}",
    )
    return run_dir


# -- the installed package ------------------------------------------------------------------
@pytest.mark.slow
def test_packages_and_configs_come_from_the_wheel(installed: Installed) -> None:
    code = (
        "import json, sys, train, recmodels, data_modules\n"
        "from train.cli.configs import CONFIG_DIR\n"
        "print(json.dumps({'files': [m.__file__ for m in (train, recmodels, data_modules)],"
        " 'config_dir': CONFIG_DIR, 'sys_path': sys.path}))"
    )
    found = json.loads(installed.run(str(installed.env / "bin" / "python"), "-c", code).stdout)
    for name, file in zip(PACKAGES, found["files"]):
        assert Path(file) == installed.site_packages / name / "__init__.py"
    assert Path(found["config_dir"]) == installed.site_packages / "train" / "conf"
    assert not {str(ROOT), str(ROOT.resolve())} & set(found["sys_path"])
    shipped = {p.relative_to(installed.site_packages / "train" / "conf") for p in (installed.site_packages / "train" / "conf").rglob("*.yaml")}
    assert shipped == {p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml")}
    for command in COMMANDS:
        assert (installed.env / "bin" / command).is_file(), command


@pytest.mark.slow
def test_train_help_lists_the_shipped_config_groups(installed: Installed) -> None:
    out = installed.run(installed.command("recflow-train"), "--help").stdout
    assert "model: " in out and "neumf" in out and "trainer: " in out


@pytest.mark.slow
def test_train_uses_a_user_config_group_file(user_run: Path) -> None:
    metrics = json.loads((user_run / "metrics.json").read_text())
    assert metrics["model"] == "my_gmf"
    assert 0.0 <= metrics["test/ndcg@10"] <= 1.0


@pytest.mark.slow
def test_serve_answers_for_the_trained_run(installed: Installed, user_run: Path) -> None:
    port = free_port()
    with ServeProcess(installed, user_run, port) as url:
        health = json.loads(urllib.request.urlopen(f"{url}/health", timeout=10).read())
        assert health["status"] == "ok" and health["model"] == "my_gmf"
        answer = post_json(f"{url}/recommend", {"user": 0, "k": 5})
    assert answer["user"] == 0 and len(answer["items"]) == 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    return json.loads(urllib.request.urlopen(request, timeout=30).read())


class ServeProcess:
    """``recflow-serve`` as a subprocess; entering waits until ``/health`` answers."""

    def __init__(self, installed: Installed, run_dir: Path, port: int, wait_s: float = 90) -> None:
        self.url, self.wait_s = f"http://127.0.0.1:{port}", wait_s
        self.args = [installed.command("recflow-serve"), f"run={run_dir}", "host=127.0.0.1", f"port={port}"]
        self.cwd = installed.workdir
        self.log = installed.workdir / f"serve-{port}.log"

    def __enter__(self) -> str:
        with self.log.open("w") as log:
            self.process = subprocess.Popen(self.args, cwd=self.cwd, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.wait_s
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                pytest.fail(f"recflow-serve did not answer /health:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _healthy(self) -> bool:
        try:
            return urllib.request.urlopen(f"{self.url}/health", timeout=2).status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False


# -- optional dependencies ------------------------------------------------------------------
@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Makes modules unimportable (``None`` in sys.modules) for one test, including
    submodules an earlier test already imported."""

    def hide(*modules: str) -> None:
        for module in modules:
            loaded = [name for name in sys.modules if name.startswith(module + ".")]
            for name in [module, *loaded]:
                monkeypatch.setitem(sys.modules, name, None)

    return hide


def test_missing_optional_package_names_its_extra(without) -> None:
    without("deepspeed", "uvicorn")
    with pytest.raises(MissingExtraError, match=r"consolidating needs DeepSpeed: pip install 'recflow\[deepspeed\]'"):
        require("deepspeed.utils.zero_to_fp32", "deepspeed", "consolidating", "DeepSpeed")
    with pytest.raises(MissingExtraError, match=r"recflow-serve needs uvicorn: pip install 'recflow\[serve\]'"):
        require("uvicorn", "serve", "recflow-serve")


def test_deepspeed_trainer_without_deepspeed_fails_before_training(tmp_path: Path, without) -> None:
    cfg = tiny_config(tmp_path, "trainer=deepspeed_zero2")
    without("deepspeed")
    with pytest.raises(MissingExtraError, match=r"trainer=deepspeed_\* needs DeepSpeed: pip install 'recflow\[deepspeed\]'"):
        check_config(cfg)


def test_search_without_the_sweeper_names_the_extra(without) -> None:
    without("hydra_plugins", "hydra_plugins.hydra_optuna_sweeper")
    with pytest.raises(SystemExit, match=r"hparams_search=ncf_optuna needs the Optuna sweeper: pip install 'recflow\[search\]'"):
        check_sweeper_installed(["-m", "hparams_search=ncf_optuna"])
    check_sweeper_installed(["hparams_search=null", "model=gmf"])
