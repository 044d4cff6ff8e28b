"""The import rules of docs/architecture.md, read from the code itself.

Every ``import`` in a layer's files (module level or inside a function) is checked
against what that layer may use, so a shortcut through the layers fails here rather
than surfacing as a tangle later. A second test imports the serving room in a fresh
interpreter and checks that Lightning never gets loaded.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIGHTNING = ("pytorch_lightning", "lightning", "lightning_fabric")

# layer -> (files, modules it must never import). A module matches a prefix when it is
# that name or lies inside it (``train.training`` matches ``train.training.run``).
RULES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "recmodels": (["recmodels"], ("train", "data_modules", "hydra", "omegaconf", "pandas", "pyarrow", *LIGHTNING)),
    "data_modules": (["data_modules"], ("train", "recmodels", "hydra")),
    "evaluation": (["train/evaluation"], ("train.training", "train.curriculum", "train.serving", "train.runs",
                                           "train.cli", "hydra", *LIGHTNING)),
    "runs": (["train/runs"], ("train.training", "train.curriculum", "train.serving", "train.cli", *LIGHTNING)),
    "building": (["train/building.py"], ("train.training", "train.curriculum", "train.serving", "train.runs",
                                         "train.cli", *LIGHTNING)),
    "serving": (["train/serving"], ("train.training", "train.curriculum", "train.cli", *LIGHTNING)),
    "curriculum": (["train/curriculum"], ("train.training", "train.serving", "train.cli", "train.runs")),
    "training": (["train/training"], ("train.serving", "train.cli")),
}
# Lightning data modules are the only data-layer files that may import Lightning.
LIGHTNING_DATA_MODULES = {"data_modules/base.py", "data_modules/pairs.py", "data_modules/sequence_module.py"}


def python_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        target = ROOT / path
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return files


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (relative imports are not used here)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(layer: str) -> list[str]:
    paths, forbidden = RULES[layer]
    found = []
    for path in python_files(paths):
        rel = path.relative_to(ROOT).as_posix()
        banned = tuple(f for f in forbidden if not (rel in LIGHTNING_DATA_MODULES and f in LIGHTNING))
        if layer == "data_modules" and rel not in LIGHTNING_DATA_MODULES:
            banned = (*banned, *LIGHTNING)
        for module in sorted(imported_modules(path)):
            hits = [prefix for prefix in banned if matches(module, prefix)]
            if hits:
                found.append(f"{rel} imports {module}")
    return found


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    assert python_files(RULES[layer][0]), f"no files for layer {layer}: has the layout changed?"
    assert violations(layer) == []


def test_nothing_but_the_entry_points_imports_the_commands() -> None:
    """train/cli is the top floor: libraries never import it (scripts and tests may)."""
    users = [
        f"{path.relative_to(ROOT)} imports {module}"
        for layer in ("train", "recmodels", "data_modules")
        for path in python_files([layer])
        if "cli" not in path.relative_to(ROOT).parts and path.name != "__main__.py"
        for module in imported_modules(path)
        if matches(module, "train.cli")
    ]
    assert users == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The AST reader finds imports inside functions too, so a lazy shortcut is caught."""
    source = tmp_path / "shortcut.py"
    source.write_text("def f():\n    from train.training.run import train\n    import pytorch_lightning as pl\n")
    assert {"train.training.run", "train.training.run.train", "pytorch_lightning"} <= imported_modules(source)


def test_serving_loads_without_lightning() -> None:
    """Loading a run, top-K, HTTP, export and profiles never import Lightning or training code."""
    code = (
        "import sys\n"
        "import train.serving, train.serving.http, train.serving.export, train.serving.profiles, train.serving.infer\n"
        "import train.runs.artifacts, train.runs.checkpoints, train.evaluation\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {LIGHTNING!r} "
        "or m.startswith(('train.training', 'train.curriculum')))\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
