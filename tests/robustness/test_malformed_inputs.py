"""Over a thousand seeded malformed inputs: files, configs, HTTP bodies, checkpoints and caches.

Every case must end in one of three ways:

- a clear error of the project's types (DataFormatError, ConfigError, CheckpointError,
  ArtifactError, a ValueError naming the file or key, a 4xx answer with a ``detail``);
- a load whose report counts the skipped lines/rows;
- a correct load, equal to an independent parse of the valid lines;

never another exception (a traceback from deep inside) and never a silent change. The
counts per category are printed (``pytest -s``). Sizes are small enough for CI.
"""
from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from data_modules.preprocessing import DataFormatError
from data_modules.sources import movielens, sequence_file, tabular
from tests.robustness.corruptions import FileCase, features_case, movielens_case, sequence_case, tabular_case

SEED = 20240611
SIZES = {"sequence": 260, "tabular": 240, "features": 110, "movielens": 90}
TOTALS: Counter = Counter()


class Tally:
    """Outcomes of one category; unexpected ones are kept with their case to report."""

    def __init__(self, category: str) -> None:
        self.category = category
        self.counts: Counter = Counter()
        self.failures: list[str] = []

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    def fail(self, case: Any, problem: str) -> None:
        self.counts["unexpected"] += 1
        self.failures.append(f"{case}: {problem}")

    def finish(self, capsys: pytest.CaptureFixture) -> None:
        total = sum(self.counts.values())
        if not self.failures:  # the total counts categories that ended cleanly
            TOTALS[self.category] += total
        with capsys.disabled():
            shown = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            print(f"\n[robustness] {self.category}: {total} inputs ({shown}); tracebacks {self.counts['unexpected']}")
        assert not self.failures, "\n".join(self.failures[:8])


def run_case(tally: Tally, label: str, load: Callable[[], Any], expect_error: bool | None, check: Callable) -> None:
    """Run ``load``: an error must be clear (``check(error=...)``), a load must match
    (``check(result=...)``); ``expect_error`` (None: either) says which must happen."""
    try:
        result = load()
    except Exception as exc:  # noqa: BLE001 - classifying every outcome is the point
        problem = check(error=exc)
        if problem:
            tally.fail(label, problem)
        elif expect_error is False:
            tally.fail(label, f"must load, raised {type(exc).__name__}: {exc}")
        else:
            tally.add("clear error")
        return
    if expect_error is True:
        tally.fail(label, "must fail, loaded")
        return
    problem, outcome = check(result=result)
    if problem:
        tally.fail(label, problem)
    else:
        tally.add(outcome)


def clear_file_error(exc: BaseException, path: Path) -> str | None:
    """None when ``exc`` is a project error that names the file (or the split key)."""
    message = str(exc)
    if isinstance(exc, (DataFormatError, FileNotFoundError, IsADirectoryError)) and path.name in message:
        return None
    if type(exc) is ValueError and ("preprocess.split" in message or path.name in message):
        return None
    return f"unclear {type(exc).__name__}: {message[:300]}"


# --- files ------------------------------------------------------------------------------


def test_sequence_files(tmp_path: Path, capsys) -> None:
    rng, tally = random.Random(SEED), Tally("files/sequence (pairs, rows)")
    for n in range(SIZES["sequence"]):
        case = sequence_case(rng)
        path = tmp_path / f"seq{n}.txt"
        path.write_bytes(case.data)
        options = {**case.options, "preprocess": {"dedup": False}}
        check = file_checker(case, path, sequences_of, lambda r: r["skipped_lines"])
        run_case(tally, f"{path.name} {options}", lambda: sequence_file(path, **options), bool(case.error), check)
    tally.finish(capsys)


def test_tabular_files(tmp_path: Path, capsys) -> None:
    rng, tally = random.Random(SEED + 1), Tally("files/tabular (CSV, TSV)")
    for n in range(SIZES["tabular"]):
        case = tabular_case(rng)
        path = tmp_path / f"log{n}{case.kind.removeprefix('tabular')}"
        path.write_bytes(case.data)
        skipped = lambda r: r.get("skipped_lines", 0) + r.get("skipped_rows", {}).get("count", 0)  # noqa: E731
        check = file_checker(case, path, rows_of, skipped)
        run_case(tally, path.name, lambda: tabular(path, **case.options), bool(case.error), check)
    tally.finish(capsys)


def test_feature_tables(tmp_path: Path, capsys) -> None:
    rng, tally = random.Random(SEED + 2), Tally("files/feature TSV")
    for n in range(SIZES["features"]):
        pairs, case = features_case(rng)
        (tmp_path / f"seq{n}.txt").write_bytes(pairs)
        path = tmp_path / f"items{n}.tsv"
        path.write_bytes(case.data)

        def load(n=n, path=path, case=case):
            return sequence_file(tmp_path / f"seq{n}.txt", item_features_path=path, **case.options)

        check = file_checker(case, path, None, lambda r: r["item_file"]["skipped_lines"])
        run_case(tally, path.name, load, bool(case.error), check)
    tally.finish(capsys)


def test_movielens_ratings(tmp_path: Path, capsys) -> None:
    rng, tally = random.Random(SEED + 3), Tally("files/MovieLens ratings.dat")
    for n in range(SIZES["movielens"]):
        case = movielens_case(rng)
        folder = tmp_path / f"root{n}" / "ml-1m"
        folder.mkdir(parents=True)
        (folder / "ratings.dat").write_bytes(case.data)

        def load(folder=folder, case=case):
            return movielens("ml-1m", root=folder.parent, download=False, features=False, **case.options)

        check = file_checker(case, folder / "ratings.dat", rated_rows_of, lambda r: r["skipped_lines"])
        run_case(tally, f"{folder}/ratings.dat", load, bool(case.error), check)
    tally.finish(capsys)


def test_truncated_parquet_files(tmp_path: Path, capsys) -> None:
    """A Parquet file cut short (or not Parquet at all) is named; its footer is gone, so
    nothing of it can load. (Flipped bytes inside a page are not detectable: Parquet
    files carry no checksum by default.)"""
    rng, tally = random.Random(SEED + 9), Tally("files/Parquet (truncated, garbage)")
    good = tmp_path / "good.parquet"
    pd.DataFrame({"user": np.repeat(np.arange(20), 5), "item": np.tile(np.arange(5), 20),
                  "timestamp": np.arange(100)}).to_parquet(good)
    raw = good.read_bytes()
    for n in range(40):
        path = tmp_path / f"t{n}.parquet"
        path.write_bytes(raw[: rng.randrange(len(raw) - 8)] if n % 4 else bytes(rng.randrange(256) for _ in range(200)))
        check = lambda error=None, result=None, path=path: clear_file_error(error, path)  # noqa: E731
        run_case(tally, path.name, lambda path=path: tabular(path, cache=False), True, check)
    tally.finish(capsys)


def test_a_directory_or_missing_path_is_named(tmp_path: Path, capsys) -> None:
    tally = Tally("files/paths")
    for path in (tmp_path, tmp_path / "missing.txt"):
        for loader in (sequence_file, tabular):
            check = lambda error=None, result=None, path=path: (  # noqa: E731
                None if isinstance(error, OSError) and str(path) in str(error) and "data.path" in str(error)
                else f"unclear: {error!r}"
            )
            run_case(tally, f"{loader.__name__}({path})", lambda: loader(path, cache=False), True, check)
    tally.finish(capsys)


def file_checker(case: FileCase, path: Path, parsed: Callable | None, skipped: Callable) -> Callable:
    """The check for one file case: a clear error, or the oracle's rows and skip count."""

    def check(error: BaseException | None = None, result: Any = None):
        if error is not None:
            return clear_file_error(error, path)
        source = result.report["source"]
        if skipped(source) != case.skipped:
            return f"reported {skipped(source)} skipped, the valid lines leave {case.skipped}", ""
        if parsed is not None and parsed(result) != parsed_oracle(case, parsed):
            return "loaded interactions differ from the independent parse (a silent change)", ""
        if case.features is not None:
            problem = features_differ(result, case.features)
            if problem:
                return problem, ""
        return None, "counted skip" if case.skipped else "correct load"

    return check


def parsed_oracle(case: FileCase, parsed: Callable) -> Any:
    """The oracle's rows in the form ``parsed`` gives the loaded data."""
    if parsed is sequences_of:
        out: dict = {}
        for user, item in case.rows:
            out.setdefault(user, []).append(item)
        return out
    return sorted(case.rows, key=repr)


def sequences_of(data) -> dict:
    """Raw user -> raw items in time order (ids compared exactly, as Python ints)."""
    frame = data.interactions.sort_values(["user", "timestamp"], kind="stable")
    out: dict = {}
    for u, i in zip(data.user_ids[frame["user"]], data.item_ids[frame["item"]]):
        out.setdefault(int(u), []).append(int(i))
    return out


def rows_of(data) -> list:
    inter = data.interactions
    users, items = data.user_ids[inter["user"]], data.item_ids[inter["item"]]
    rows = [(plain(u), plain(i), float(t)) for u, i, t in zip(users, items, inter["timestamp"])]
    return sorted(rows, key=repr)


def rated_rows_of(data) -> list:
    inter = data.interactions
    users, items = data.user_ids[inter["user"]], data.item_ids[inter["item"]]
    rows = zip(users, items, inter["timestamp"], inter["rating"])
    return sorted(((int(u), int(i), float(t), float(r)) for u, i, t, r in rows), key=repr)


def plain(value: Any) -> Any:
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def features_differ(data, expected: dict) -> str | None:
    table = data.item_features
    for internal, raw in enumerate(data.item_ids):
        year, genres = expected.get(int(raw), ("", []))
        got_year, got_genres = table.loc[internal, "year"], table.loc[internal, "genres"]
        if norm(got_year) != norm(year) or list(got_genres) != genres:
            return f"item {raw}: features ({got_year!r}, {got_genres!r}) != file ({year!r}, {genres!r})"
    return None


def norm(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return None if np.isnan(number) else number


# --- configs ------------------------------------------------------------------------------


BAD_VALUES = ["abc", "-1", "0", "1.5", "[1,2]", "null", "true", "''", "99999999999999999999", "-0.5"]
CONFIG_KEYS = [
    "trainer.max_epochs", "trainer.min_epochs", "trainer.max_steps", "trainer.check_val_every_n_epoch",
    "trainer.log_every_n_steps", "trainer.num_sanity_val_steps", "trainer.gradient_clip_val",
    "trainer.accumulate_grad_batches", "trainer.limit_val_batches", "trainer.limit_train_batches",
    "data.num_users", "data.num_items", "data.num_clusters", "data.min_length", "data.max_length",
    "data.seed", "data.zipf_exponent", "data.p_sequential", "data.p_cluster",
    "data.preprocess.dedup", "data.preprocess.min_user_interactions", "data.preprocess.split",
    "data.preprocess.short_users", "data.preprocess.ratios", "data.preprocess.rating_threshold",
    "eval.protocol", "eval.ks", "eval.num_negatives", "eval.sampler", "eval.seed", "eval.batch_size",
    "eval.max_history", "eval.metrics", "eval.num_workers", "eval.val_sampler",
    "model.net.mf_dim", "model.net.mlp_embed_dim", "model.net.layers", "model.task.embedding_l2",
    "model.task.optimizer.lr", "model.datamodule.batch_size", "model.datamodule.num_negatives",
    "monitor", "optimized_metric", "seed", "num_threads",
]  # fmt: skip
MONITORS = ["val/ndgc@10", "val/hr@7", "test/hr@10", "val/ndcg@x", "val/HR@10", "val/mrr", "val/ndcg@10 ", ""]
COMPOSED = 24  # cases composed by Hydra itself; the rest are merged into a composed config


def test_config_values(tmp_path: Path, capsys) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from tests.helpers import CONF_DIR, TINY_DATA

    rng, tally = random.Random(SEED + 4), Tally("configs (trainer/data/eval/model keys)")
    cases = [(key, value) for key in CONFIG_KEYS for value in rng.sample(BAD_VALUES, 4)]
    cases += [("monitor", m) for m in MONITORS]
    rng.shuffle(cases)
    built: dict[str, Any] = {}
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        base = compose(config_name="train", overrides=[*TINY_DATA, "data.max_length=12"])
        for n, (key, value) in enumerate(cases):
            override = f"{key}={value}"

            def load(n=n, override=override, key=key, value=value):
                if n < COMPOSED:
                    cfg = compose(config_name="train", overrides=[*TINY_DATA, "data.max_length=12", override])
                else:
                    cfg = OmegaConf.merge(base, OmegaConf.from_dotlist([override]))
                with open_dict(cfg):
                    cfg.paths.output_dir = str(tmp_path)
                return build_everything(cfg, built)

            run_case(tally, override, load, None, config_checker(key))
    tally.finish(capsys)


def build_everything(cfg, built: dict[str, Any]) -> str:
    """Check the config, then build what a run builds before training (data cached by
    its config), so a value the checks let through must also build cleanly."""
    import hydra
    from omegaconf import OmegaConf

    from train.building import build_with_data, instantiate_with
    from train.training.config_checks import check_config

    check_config(cfg)
    key = OmegaConf.to_yaml(cfg.data)
    if key not in built:
        built[key] = hydra.utils.instantiate(cfg.data)
    data = built[key]
    evaluator = hydra.utils.instantiate(cfg.eval)
    model = build_with_data(cfg.model.net, data)
    instantiate_with(cfg.model.datamodule, data=data, eval_spec=evaluator.spec, seed=cfg.seed)
    build_with_data(cfg.model.task, data, model=model, evaluator=evaluator)
    instantiate_with(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False, default_root_dir=None)
    return "built"


def config_checker(key: str) -> Callable:
    leaf = key.rsplit(".", 1)[-1]

    def check(error: BaseException | None = None, result: Any = None):
        if error is None:
            return None, "correct load"
        cause = unwrap(error)
        message = str(cause)
        from train.training.config_checks import ConfigError

        if isinstance(cause, ConfigError) and leaf in message:
            return None
        if type(error).__name__ in ("ConfigCompositionException", "OverrideParseException", "ConfigKeyError"):
            return None if leaf in str(error) else f"unclear Hydra error: {error}"
        if isinstance(cause, ValueError) and leaf in message:
            return None
        return f"{type(cause).__name__} not naming {key}: {message[:300]}"

    return check


def unwrap(error: BaseException) -> BaseException:
    """The error Hydra's InstantiationException wraps."""
    while type(error).__name__ == "InstantiationException" and error.__cause__ is not None:
        error = error.__cause__
    return error


# --- HTTP bodies -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """Untrained tiny runs (weights as initialised): the HTTP layer is what is tested."""
    from fastapi.testclient import TestClient

    from train.serving import load_recommender
    from train.serving.http import RecommenderService, create_app

    out = {}
    for name in ("neumf", "sasrec"):
        run = untrained_run(tmp_path_factory.mktemp(name), name)
        model, ctx = load_recommender(run)
        out[name] = (TestClient(create_app(RecommenderService(model, ctx, max_request_items=20))), model, ctx)
    return out


def untrained_run(folder: Path, model_name: str) -> Path:
    import hydra

    from tests.helpers import tiny_config
    from train.building import build_with_data
    from train.runs.artifacts import save_run_artifacts

    small = ["model.net.hidden=16", "model.net.num_blocks=1", "model.net.num_heads=2", "model.net.max_len=10"]
    cfg = tiny_config(folder, f"model={model_name}", *(small if model_name == "sasrec" else []))
    data = hydra.utils.instantiate(cfg.data)
    save_run_artifacts(folder, cfg, data, None, model=build_with_data(cfg.model.net, data))
    return folder


def http_bodies(rng: random.Random, ctx, n: int) -> list[bytes]:
    users = [plain(u) for u in ctx.data.user_ids[:5]]
    items = [plain(i) for i in ctx.data.item_ids[:8]]
    ids = [*users, *items, -1, 0, 10**30, 2**63, 1.5, "x", "", "\ud800", None, True, [1], {"a": 1}]
    ks = [1, 5, 10] * 3 + [0, -3, 10**6, 2**70, "10", 2.5, True, None, [3]]
    bodies: list[bytes] = []
    for _ in range(n):
        kind = rng.randrange(10)
        body: Any = {}
        if kind < 4:
            body = {"user": rng.choice(users if rng.random() < 0.6 else ids), "k": rng.choice(ks)}
        elif kind < 7:
            body = {"history": rng.sample(items, rng.randrange(0, 4)) + rng.sample(ids, rng.randrange(0, 2)),
                    "k": rng.choice(ks)}
        elif kind == 7:
            body = rng.choice([[], 5, "user", None, {"user": users[0], "history": items[:2]}, {"k": 5},
                               {"user": users[0], "bogus": 1}, {"user": users[0], "exclude_seen": "no"}])
        if isinstance(body, dict) and rng.random() < 0.4:
            body["exclude"] = rng.sample(items + ids, rng.randrange(0, 4))
        raw = json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        if kind == 8:  # broken JSON
            raw = rng.choice([raw[: rng.randrange(max(len(raw), 1))], b"{user: 1}", b"[" * 5000, b"{\"k\": NaN}",
                              b"{\"user\": " + b"9" * 5000 + b"}", bytes(rng.randrange(256) for _ in range(64)),
                              b"\xef\xbb\xbf" + raw, b""])
        if kind == 9:
            raw = b'{"user": 1, "exclude": [' + b",".join([b"1"] * rng.choice([30, 200_000])) + b"]}"
        bodies.append(raw)
    return bodies


def test_http_bodies(services, capsys) -> None:
    rng, tally = random.Random(SEED + 5), Tally("HTTP request bodies")
    for name, (client, model, ctx) in services.items():
        for n, body in enumerate(http_bodies(rng, ctx, 110)):
            check = http_checker(model, ctx, body)
            run_case(tally, f"{name} body {body[:80]!r}", lambda: client.post("/recommend", content=body,
                     headers={"content-type": "application/json"}), False, check)
    tally.finish(capsys)


def http_checker(model, ctx, body: bytes) -> Callable:
    def check(error: BaseException | None = None, result: Any = None):
        if error is not None:
            return f"the service raised {type(error).__name__}: {error}"
        if 400 <= result.status_code < 500:
            detail = result.json().get("detail")
            return (None, "clear error (4xx)") if isinstance(detail, str) and detail else ("4xx without detail", "")
        if result.status_code != 200:
            return f"status {result.status_code}: {result.text[:200]}", ""
        problem = answer_problem(model, ctx, json.loads(body.decode("utf-8-sig")), result.json())
        return problem, "correct answer"

    return check


def answer_problem(model, ctx, request: dict, answer: dict) -> str | None:
    """A 200 answer must be the brute-force top-k of the request."""
    import torch

    from train.serving import known_pairs

    k = request.get("k", 10)
    exclude = set(ctx.items.to_internal(request.get("exclude", [])).tolist())
    if "user" in request:
        internal = ctx.users.to_internal([request["user"]])
        context = ctx.user_context(internal)
        if request.get("exclude_seen", True):
            exclude |= set(known_pairs(ctx.known, internal)[1].tolist())
    else:
        history = ctx.items.to_internal(request["history"])
        context = ctx.history_context([history])
        exclude |= set(history.tolist()) if request.get("exclude_seen", True) else set()
    with torch.no_grad():
        scores = model.score_all(context)[0].double()
    items = ctx.items.to_internal(answer["items"])
    if len(set(items.tolist())) != len(items) or (items < 0).any() or exclude & set(items.tolist()):
        return f"answer items {answer['items']} repeat, are unknown or were excluded"
    if len(items) > k or not np.all(np.diff(answer["scores"]) <= 1e-6):
        return "more than k items, or scores not in descending order"
    if not np.allclose(scores[items].numpy(), answer["scores"], atol=1e-4):
        return "answer scores differ from the model's scores"
    return None


# --- checkpoints and caches -----------------------------------------------------------------------


def damage(raw: bytes, rng: random.Random) -> bytes:
    """Flip bytes, truncate, zero a range, append noise or empty the file."""
    choice, data = rng.randrange(5), bytearray(raw)
    if choice == 0:
        for _ in range(rng.randrange(1, 8)):
            at = rng.randrange(len(data))
            data[at] ^= rng.randrange(1, 256)
        return bytes(data)
    if choice == 1:
        return bytes(data[: rng.randrange(len(data))])
    if choice == 2:
        start = rng.randrange(len(data))
        data[start : start + rng.randrange(1, 64)] = bytes(len(data[start : start + 64]))
        return bytes(data) if bytes(data) != raw else bytes(data[:-1])
    if choice == 3:
        return raw + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return b""


def test_damaged_checkpoints(tmp_path: Path, capsys) -> None:
    import torch

    from recmodels.ncf import GMF
    from train.runs.checkpoints import CheckpointError, load_weights, write_checksum

    rng, tally = random.Random(SEED + 6), Tally("checkpoints (bytes flipped/truncated)")
    model = GMF(30, 20, 8)
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, good)
    write_checksum(good)
    for n in range(90):
        path = tmp_path / f"c{n}.ckpt"
        path.write_bytes(damage(good.read_bytes(), rng))
        shutil.copyfile(good.with_name(good.name + ".sha256"), path.with_name(path.name + ".sha256"))

        def check(error=None, result=None, path=path):
            if isinstance(error, CheckpointError) and path.name in str(error):
                return None
            return f"unclear {type(error).__name__}: {error}"

        run_case(tally, path.name, lambda path=path: load_weights(GMF(30, 20, 8), path), True, check)
    tally.finish(capsys)


RUN_ERRORS = ("ArtifactError", "CheckpointError", "CacheIntegrityError")


def damaged_runs(tally: Tally, run: Path, files: list[Path], rng: random.Random, cases: int, tmp: Path) -> None:
    """Load copies of ``run`` with one of ``files`` damaged: a clear error, or (a
    checksum file damaged after its digest) the same weights."""
    from train.serving import load_recommender

    original = load_recommender(run)[0].state_dict()
    for n in range(cases):
        copy = tmp / f"{run.name}{n}"
        shutil.copytree(run, copy)
        target = copy / rng.choice(files).relative_to(run)
        target.write_bytes(damage(target.read_bytes(), rng))

        def check(error=None, result=None, target=target):
            if error is None:
                same = all(torch_equal(result[0].state_dict()[k], v) for k, v in original.items())
                return (None, "correct load") if same else (f"damaged {target.name} changed the weights", "")
            if type(error).__name__ in RUN_ERRORS:
                return None
            return f"unclear {type(error).__name__} for damaged {target.name}: {error}"

        run_case(tally, str(target.relative_to(copy)), lambda copy=copy: load_recommender(copy), None, check)
        shutil.rmtree(copy)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_damaged_run_and_data_caches(tmp_path: Path, capsys) -> None:
    rng, tally = random.Random(SEED + 7), Tally("caches (run artifacts, data cache)")
    run = untrained_run(tmp_path / "run", "neumf")
    binary = sorted(p for p in (run / "artifacts").rglob("*") if p.suffix in (".parquet", ".npy", ".pt"))
    damaged_runs(tally, run, binary, rng, 40, tmp_path)
    # A damaged data cache entry is rebuilt from the source: the result equals a fresh load.
    source = tmp_path / "seq.txt"
    source.write_text("".join(f"{u} {i}\n" for u in range(1, 20) for i in rng.sample(range(1, 60), 6)))
    fresh = sequence_file(source, cache=False)
    sequence_file(source, cache_dir=tmp_path / "cache")
    entry = next((tmp_path / "cache").iterdir())
    pristine = {p.name: p.read_bytes() for p in entry.iterdir()}
    for n in range(40):
        entry.mkdir(exist_ok=True)
        for name, raw in pristine.items():
            (entry / name).write_bytes(raw)
        name = rng.choice(sorted(pristine))
        (entry / name).write_bytes(damage(pristine[name], rng))

        def check(error=None, result=None, name=name):
            if error is not None:
                return f"damaged cache file {name} raised {type(error).__name__}: {error}"
            same = result.interactions.equals(fresh.interactions) and np.array_equal(result.user_ids, fresh.user_ids)
            return (None, "rebuilt, equal") if same else ("a damaged cache changed the data", "")

        run_case(tally, f"cache/{name}", lambda: sequence_file(source, cache_dir=tmp_path / "cache"), False, check)
    tally.finish(capsys)


def test_damaged_run_metadata(tmp_path: Path, capsys) -> None:
    rng, tally = random.Random(SEED + 8), Tally("caches (run metadata files)")
    run = untrained_run(tmp_path / "run", "neumf")
    text = sorted(p for p in (run / "artifacts").rglob("*") if p.suffix in (".json", ".sha256"))
    damaged_runs(tally, run, text, rng, 30, tmp_path)
    tally.finish(capsys)


def test_total_inputs(capsys) -> None:
    """At least a thousand inputs across the categories that ended without a traceback
    (runs last in this module; a partial run, e.g. with -k, checks nothing)."""
    with capsys.disabled():
        print(f"\n[robustness] total: {sum(TOTALS.values())} inputs without a traceback, by category {dict(TOTALS)}")
    if len(TOTALS) >= 10:
        assert sum(TOTALS.values()) >= 1000
