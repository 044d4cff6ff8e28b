"""Fail fast on config values that would otherwise break deep inside a run."""
from __future__ import annotations

import difflib
import inspect
import os
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from data_modules.interactions import VAL, InteractionData
from data_modules.preprocessing import PreprocessConfig
from train.building import FEATURE_KEYS
from train.evaluation.metrics import DEFAULT_METRICS, check_ks, check_metrics
from train.extras import check_deepspeed_installed
from train.training.compilation import compile_options
from train.training.config_error import ConfigError
from train.training.threads import check_setting as check_threads_setting
from train.training.checkpoint_checksums import is_remote


# Nodes built from ``_target_``: their keys are checked against the target's signature.
CHECKED_NODES = ("data", "eval", "trainer", "model.net", "model.task", "model.datamodule")
# (node, key) -> smallest allowed value; the value -1 is also allowed where listed.
MINIMUM: dict[tuple[str, str], float] = {
    ("trainer", "max_epochs"): 1, ("trainer", "min_epochs"): 0, ("trainer", "max_steps"): 1,
    ("trainer", "min_steps"): 0, ("trainer", "check_val_every_n_epoch"): 1,
    ("trainer", "log_every_n_steps"): 1, ("trainer", "num_sanity_val_steps"): 0,
    ("trainer", "accumulate_grad_batches"): 1, ("trainer", "gradient_clip_val"): 0,
    ("trainer", "limit_train_batches"): 0, ("trainer", "limit_val_batches"): 0,
    ("trainer", "limit_test_batches"): 0, ("eval", "batch_size"): 1, ("eval", "num_negatives"): 1,
    ("eval", "max_history"): 1, ("eval", "num_workers"): 0, ("data", "max_bad_fraction"): 0,
    ("model.datamodule", "batch_size"): 1, ("model.datamodule", "num_negatives"): 0,
    ("", "seed"): 0, ("data", "seed"): 0, ("eval", "seed"): 0,
    ("model.task.optimizer", "lr"): 0, ("model.task.optimizer", "weight_decay"): 0,
    ("model.task", "embedding_l2"): 0,
}  # fmt: skip
# Top-level keys no target checks: the types they must have.
TOP_LEVEL: dict[str, Any] = {"seed": int, "ckpt_path": str | None}
# model.net sizes that must be >= 1 (a zero-width layer builds, then learns nothing).
SIZE_KEYS = ("hidden", "num_blocks", "num_heads", "max_len", "layers")
NO_LIMIT = {("trainer", "max_epochs"), ("trainer", "max_steps"), ("trainer", "num_sanity_val_steps")}
MAXIMUM: dict[tuple[str, str], float] = {
    ("data", "max_bad_fraction"): 1, ("", "seed"): 2**32 - 1, ("data", "seed"): 2**32 - 1,
    ("eval", "seed"): 2**32 - 1,
}  # fmt: skip (numpy and Lightning take 32-bit seeds; Lightning replaces others silently)
_HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
# Targets whose ``**kwargs`` are passed on whole to another function (checked against it).
FORWARDED_KWARGS = {"data_modules.sources.synthetic": "data_modules.synthetic_generator.generate"}
# Keys that train.building takes out of a node before building it.
EXTRA_KEYS = {"model.net": FEATURE_KEYS}


def check_config(cfg: DictConfig) -> None:
    """Every check that needs only the config, run before any data is read."""
    for key in CHECKED_NODES:
        node = OmegaConf.select(cfg, key, throw_on_missing=False)
        if isinstance(node, DictConfig):
            check_node_types(node, key, EXTRA_KEYS.get(key, ()))
    for key, hint in TOP_LEVEL.items():
        _check_value(key, _value(cfg, key), hint)
    try:
        check_threads_setting(cfg.get("num_threads"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _check_numbers(cfg)
    _check_model_sizes(cfg)
    _check_preprocess(cfg)
    _check_monitor(cfg)
    _check_weight_averaging(cfg)
    _check_loss_options(cfg)
    _check_sparse_embeddings(cfg)
    _check_ckpt_path(cfg.get("ckpt_path"))
    _check_compile(cfg)
    _check_overfit_batches(cfg)
    check_deepspeed_installed(cfg)


def _check_overfit_batches(cfg: DictConfig) -> None:
    """Lightning's ``overfit_batches`` swaps the training sampler for one of single indices,
    which the whole-batch data modules cannot serve (it fails at the first batch)."""
    value = _value(cfg, "trainer.overfit_batches")
    if value not in (None, 0, 0.0):
        raise ConfigError(
            f"trainer.overfit_batches={value}: recflow's data modules build whole batches and "
            "cannot take Lightning's replacement sampler; use debug=overfit instead "
            "(callbacks.overfit.batches=N fixes the examples of N batches)"
        )


def _check_compile(cfg: DictConfig) -> None:
    """A bad ``compile=`` value fails before the data loads, not after."""
    compile_options(cfg.get("compile"))


def _check_ckpt_path(ckpt_path: object) -> None:
    """Lightning unpickles a remote checkpoint with weights_only=False (code in it runs)."""
    if ckpt_path and is_remote(str(ckpt_path)):
        raise ConfigError(
            f"ckpt_path={ckpt_path}: remote checkpoints are not loaded (Lightning would unpickle "
            "them unchecked); download the file yourself and pass its local path"
        )


def _check_weight_averaging(cfg: DictConfig) -> None:
    """The averaged copy is a whole model: DeepSpeed partitions and saves weights its own way."""
    averaging = (cfg.get("callbacks") or {}).get("weight_averaging")
    strategy = cfg.trainer.get("strategy")
    target = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy or "")
    if averaging and "_target_" in averaging and "deepspeed" in target.lower():  # as build_callbacks reads it
        raise ConfigError(
            "callbacks=averaged does not work with DeepSpeed strategies (the average is a whole, "
            "unpartitioned copy of the model); use callbacks=default, or trainer=ddp for averaging"
        )


# --- loss options ------------------------------------------------------------------------

BUILT_IN_LOSS_ARGS = {"num_items", "generator", "item_counts"}  # filled in by the task, not the config


def _check_loss_options(cfg: DictConfig) -> None:
    """Each ``model.task.loss`` key must be an option of the named loss: switching
    ``loss.name`` on the command line keeps the previous loss's options, which would
    otherwise fail only when training starts. A key set to null counts as unset (the
    loss's default), which is how a config file switches a model's loss and clears the
    options the new one lacks."""
    from recmodels.losses import LOSSES, loss_options

    loss = _value(cfg, "model.task.loss")
    if not isinstance(loss, DictConfig) or loss.get("name") not in LOSSES:
        return  # no sequence loss here, or an unknown name (the task reports it)
    name = loss.get("name")
    accepted = set(inspect.signature(LOSSES[name].__init__).parameters) - {"self"} - BUILT_IN_LOSS_ARGS
    foreign = [key for key in loss_options(loss) if key not in accepted]
    if not foreign:
        return
    parts = []
    for key in foreign:
        takers = sorted(n for n, cls in LOSSES.items() if key in inspect.signature(cls.__init__).parameters)
        parts.append(f"model.task.loss.{key} (taken by: {', '.join(takers) or 'no loss'})")
    removals = " ".join(f"'~model.task.loss.{key}'" for key in foreign)
    raise ConfigError(
        f"{'; '.join(parts)} {'is' if len(foreign) == 1 else 'are'} not an option of loss {name!r} "
        f"(its options: {', '.join(sorted(accepted)) or 'none'}); remove with {removals}, "
        "or use a loss that takes them"
    )


# --- sparse embeddings and memory ------------------------------------------------------

ROWWISE_OPTIMIZER = "train.training.optimizers.RowwiseAdam"


def _strategy_target(cfg: DictConfig) -> str:
    strategy = cfg.trainer.get("strategy")
    return strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy or "")


def _check_sparse_embeddings(cfg: DictConfig) -> None:
    """Row-wise table gradients need a sampled loss, a row-wise optimiser, a strategy that
    all-reduces sparse tensors (DDP does, over gloo; DeepSpeed's ZeRO stages have
    no sparse path and would leave them unreduced) and no norm clipping (torch's
    ``clip_grad_norm_`` takes dense gradients only)."""
    if _value(cfg, "model.net.sparse_embeddings") is not True:
        return
    where = "model.net.sparse_embeddings=true"
    if _value(cfg, "model.task.loss.name") == "ce":
        raise ConfigError(
            f"{where} with model.task.loss.name=ce: the full softmax scores every item, so the table "
            "gradient is whole-catalogue anyway; use model.task.loss.name=sampled_softmax (or bce, gbce), "
            "or model.net.sparse_embeddings=false"
        )
    optimizer = _value(cfg, "model.task.optimizer._target_")
    if optimizer != ROWWISE_OPTIMIZER:
        raise ConfigError(
            f"{where} gives the item table sparse gradients, which {optimizer} cannot apply row by row; "
            f"set model.task.optimizer._target_={ROWWISE_OPTIMIZER}"
        )
    if "deepspeed" in _strategy_target(cfg).lower():
        raise ConfigError(
            f"{where} needs trainer=ddp (or default): DDP all-reduces the sparse table gradients, "
            "while DeepSpeed's ZeRO stages reduce dense gradients only. With DeepSpeed, keep "
            "sparse_embeddings=false: ZeRO-3 partitions the table, its gradient and Adam state instead"
        )
    clip = _value(cfg, "trainer.gradient_clip_val")
    if _is_number(clip) and clip > 0:
        raise ConfigError(
            f"{where} with trainer.gradient_clip_val={clip}: norm clipping needs dense gradients; "
            "set trainer.gradient_clip_val=null"
        )


def training_memory_bytes(
    table_rows: int,
    hidden: int,
    *,
    num_items: int,
    loss: str,
    score_rows: int,
    num_negatives: int = 0,
    sparse: bool = False,
    touched_rows: int = 0,
    zero_stage: int = 0,
    ranks: int = 1,
) -> dict[str, int]:
    """Bytes one rank holds for the item table(s) and the loss's largest score block (fp32).

    ``table_rows`` x ``hidden`` weights (4 B each; / ranks under ZeRO-3), their gradient (4 B;
    only ``touched_rows`` rows when ``sparse``; / ranks under ZeRO-2/3), Adam's two moments
    (8 B; / ranks under ZeRO-1/2/3) and ``score_rows`` rows of scores with their softmax and
    gradient (3 x 4 B) against ``num_items`` (``ce``) or ``num_negatives + 1`` items. The
    transformer's few weights and the activations are left out: the table dominates.
    """
    params = table_rows * hidden
    scored = num_items if loss == "ce" else num_negatives + 1
    return {
        "table weights": 4 * params // (ranks if zero_stage >= 3 else 1),
        "table gradient": 4 * (min(touched_rows, table_rows) * hidden if sparse else params)
        // (ranks if zero_stage >= 2 and not sparse else 1),
        "Adam moments": 8 * params // (ranks if zero_stage >= 1 else 1),
        "loss scores": 12 * score_rows * scored,
    }


def available_memory(accelerator: str) -> int:
    """Free bytes on the device training will use: GPU memory, or RAM available on CPU."""
    import torch

    if accelerator == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory_fit(cfg: DictConfig, num_items: int, available: int | None = None) -> None:
    """Stop before building a sequence model whose item table or loss cannot fit.

    Nothing is switched for the user: the message names the loss, the sparse option or the
    strategy that would make the run fit.
    """
    net, task = _value(cfg, "model.net"), _value(cfg, "model.task")
    hidden, loss = _value(cfg, "model.net.hidden"), _value(cfg, "model.task.loss.name")
    if not isinstance(net, DictConfig) or not isinstance(task, DictConfig) or not _is_int(hidden) or not loss:
        return  # not a sequence model with a configured loss
    num_items = _value(cfg, "model.net.num_items") or num_items
    from train.training.strategies import resolve_accelerator

    accelerator = resolve_accelerator(str(_value(cfg, "trainer.accelerator") or "auto"))
    batch = _value(cfg, "model.datamodule.batch_size") or 1
    positions = batch * (_value(cfg, "model.net.max_len") or 1)
    chunk = _value(cfg, "model.task.loss.chunk_rows")
    streamed = accelerator == "cpu" if chunk in (None, "auto") else bool(chunk)
    score_rows = (128 if chunk in (None, "auto") else chunk) if streamed and loss == "ce" else positions
    separate_output = _value(cfg, "model.net.tied_output") is False
    stage = _value(cfg, "trainer.strategy.config.zero_optimization.stage")
    estimate = training_memory_bytes(
        num_items * (2 if separate_output else 1) + 2,
        hidden,
        num_items=num_items,
        loss=str(loss),
        score_rows=min(score_rows, positions),
        num_negatives=int(_value(cfg, "model.task.loss.num_negatives") or 0),
        sparse=_value(cfg, "model.net.sparse_embeddings") is True,
        touched_rows=2 * positions + int(_value(cfg, "model.task.loss.num_negatives") or 0),
        zero_stage=stage if _is_int(stage) and "deepspeed" in _strategy_target(cfg).lower() else 0,
        ranks=max(int(os.environ.get("WORLD_SIZE", "1")), 1),
    )
    available = available_memory(accelerator) if available is None else available
    needed = sum(estimate.values())
    if needed <= available:
        return
    parts = ", ".join(f"{name} {size / 2**30:.1f} GiB" for name, size in estimate.items())
    largest = max(estimate, key=estimate.get)
    fixes = ["model.net.sparse_embeddings=true with train.training.optimizers.RowwiseAdam (no whole-table "
             "gradient)", "trainer=deepspeed_zero3 over more ranks (table, gradient and Adam state partitioned)"]
    if loss == "ce":
        fixes.insert(0, "model.task.loss.name=sampled_softmax (scores sampled items, not the catalogue)")
    raise ConfigError(
        f"{num_items:,} items x hidden={hidden} with loss={loss} needs about {needed / 2**30:.1f} GiB on "
        f"{accelerator} ({parts}; largest: {largest}), but {available / 2**30:.1f} GiB are free. "
        f"Use {'; or '.join(fixes)}"
    )


# --- monitor --------------------------------------------------------------------------


def validation_metrics(eval_cfg: Any) -> list[str]:
    """The ``val/...`` names the evaluator will log for this ``eval`` config."""
    try:
        ks = check_ks(list(eval_cfg.get("ks", [10])))
        metrics = check_metrics(list(eval_cfg.get("metrics", DEFAULT_METRICS)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"eval.ks/eval.metrics: {exc}") from None
    if eval_cfg.get("protocol", "full") == "sampled":  # as Evaluator.new_metrics: no coverage
        metrics = tuple(m for m in metrics if m != "coverage") or ("hr",)
    names = [f"val/{m}@{k}" for k in ks for m in metrics]
    return names + (["val/mrr"] if "mrr" in metrics else [])


def check_validation_rows(cfg: DictConfig, data: InteractionData) -> bool:
    """Whether ``data`` has validation rows. Without them nothing can choose a checkpoint,
    so a ``monitor`` is refused here, before an epoch is spent (Lightning would fail at
    the first epoch's end)."""
    has_validation = bool((data.column("split") == VAL).any())
    if not has_validation and cfg.get("monitor") is not None:
        raise ConfigError(
            f"{data.name}'s split has no validation rows, so monitor={cfg.monitor!r} has nothing to "
            "choose a checkpoint with; give the split a validation part (e.g. preprocess.ratios "
            "[0.8, 0.1, 0.1]) or train a fixed number of epochs and test the last: protocol=refit"
        )
    return has_validation


def _check_monitor(cfg: DictConfig) -> None:
    """``monitor`` (and ``optimized_metric``) must be a metric validation will log, or
    checkpointing fails after the first validation, with a trained epoch lost."""
    valid = validation_metrics(cfg.eval)
    trains_on_validation = OmegaConf.select(cfg, "data.preprocess.validation") == "train"
    if trains_on_validation and cfg.get("monitor") is not None:
        raise ConfigError(
            f"data.preprocess.validation=train trains on the validation rows, so monitor="
            f"{cfg.get('monitor')!r} has nothing to choose a checkpoint with; use protocol=refit "
            "(fixed epochs, the last checkpoint tested) or data.preprocess.validation=holdout"
        )
    if cfg.get("monitor") is not None and _value(cfg, "trainer.limit_val_batches") == 0:
        raise ConfigError(
            f"trainer.limit_val_batches=0 switches validation off, so monitor={cfg.get('monitor')!r} "
            "has nothing to choose a checkpoint with (and early stopping nothing to stop on); "
            "drop limit_val_batches, or train a fixed number of epochs and test the last: protocol=refit"
        )
    for key in ("monitor", "optimized_metric"):
        value = cfg.get(key)
        if value is None and (key == "optimized_metric" or trains_on_validation):
            continue
        if not isinstance(value, str) or not value.startswith("val/"):
            raise ConfigError(
                f"{key}={value!r}: the checkpoint must be chosen on a validation metric (val/...), "
                f"never test, e.g. {key}={valid[0]} (or protocol=refit: no validation, fixed epochs)"
            )
        if value not in valid:
            raise ConfigError(f"{key}={value!r} is not a metric validation logs; {_closest(value, valid, cfg)}")


def _closest(value: str, valid: list[str], cfg: DictConfig) -> str:
    """The fix: the nearest valid name, or the eval.ks entry the cutoff needs."""
    name, _, k = value.removeprefix("val/").partition("@")
    if k.isdigit() and f"val/{name}@{valid[0].partition('@')[2]}" in valid:
        return f"add k={k} to eval.ks (now {list(cfg.eval.get('ks', []))}), e.g. eval.ks=[5,10,{k}]"
    best = difflib.get_close_matches(value, valid, n=1, cutoff=0.0)
    return f"did you mean {best[0]!r}? Valid: {', '.join(valid)}"


def _check_preprocess(cfg: DictConfig) -> None:
    """``data.preprocess`` is validated when the data is built; do it before anything runs."""
    node = _value(cfg, "data.preprocess")
    if node is None:
        return
    try:
        PreprocessConfig.of(node)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data.{exc}" if str(exc).startswith("preprocess.") else f"data.preprocess: {exc}") from None


# --- numbers --------------------------------------------------------------------------


def _check_numbers(cfg: DictConfig) -> None:
    """Range checks where a wrong number fails late or silently (types: check_node_types)."""
    for (node, key), minimum in MINIMUM.items():
        name = f"{node}.{key}" if node else key
        value = _value(cfg, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if (node, key) in NO_LIMIT and value == -1:
            continue
        maximum = MAXIMUM.get((node, key))
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
            extra = " (or -1 for no limit)" if (node, key) in NO_LIMIT else ""
            raise ConfigError(f"{name}={value} must be {bounds}{extra}")


def _check_model_sizes(cfg: DictConfig) -> None:
    """Widths, depths and lengths of ``model.net`` are positive."""
    net = _value(cfg, "model.net")
    for key in net or {}:
        key = str(key)
        if not (key in SIZE_KEYS or key.endswith("_dim")):
            continue
        value = _value(net, key)
        values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
        if any(_is_int(v) and v < 1 for v in values):
            raise ConfigError(f"model.net.{key}={value} must be >= 1 (a size of 0 builds a model that learns nothing)")


def _value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at ``key``; None when absent or not resolvable here."""
    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    except Exception:  # an interpolation that needs the run (resolved later by Hydra)
        return None


# --- types from the targets' signatures --------------------------------------------------


def check_node_types(node: DictConfig, prefix: str, extra: Sequence[str] = ()) -> None:
    """Each key of a ``_target_`` node must be a parameter of the target and hold a value
    of its annotated type, so ``trainer.max_epochs=abc`` names the key instead of failing
    as a TypeError deep inside; nested ``_target_`` nodes are checked too."""
    params, hints, open_ended = _signature(node.get("_target_"))
    for key in node:
        key = str(key)
        if key in _HYDRA_KEYS or key in extra:
            continue
        where = f"{prefix}.{key}"
        if params is not None and key not in params and not open_ended:
            close = difflib.get_close_matches(key, sorted(params), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: {node['_target_']} has no option {key!r}; {hint}options: {sorted(params)}")
        try:
            value = node[key]
        except Exception:  # an interpolation that needs the run (resolved later by Hydra)
            continue
        if isinstance(value, DictConfig) and "_target_" in value:
            check_node_types(value, where)
        elif key in hints:
            _check_value(where, value, hints[key])


def _signature(target: Any) -> tuple[set[str] | None, dict[str, Any], bool]:
    """Parameter names, their type hints and whether unknown keys are accepted;
    ``(None, {}, True)`` when the target cannot be inspected here."""
    if not isinstance(target, str):
        return None, {}, True
    try:
        obj = get_object(target)
        function = inspect.unwrap(obj.__init__ if inspect.isclass(obj) else obj)
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function)
    except Exception:  # not importable or unresolvable hints: Hydra reports it when building
        return None, {}, True
    params = {
        n for n, p in signature.parameters.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    open_ended = False
    for name, parameter in signature.parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD:
            options = _unpacked(hints.get(name)) or _forwarded(target)
            open_ended |= options is None
            params |= set(options or {})
            hints.update(options or {})
    return params, hints, open_ended


def _forwarded(target: str) -> dict[str, Any] | None:
    """The parameters ``target`` passes its ``**kwargs`` on to (:data:`FORWARDED_KWARGS`)."""
    if target not in FORWARDED_KWARGS:
        return None
    function = get_object(FORWARDED_KWARGS[target])
    hints = typing.get_type_hints(function)
    return {name: hints.get(name, Any) for name in inspect.signature(function).parameters}


def _unpacked(hint: Any) -> dict[str, Any] | None:
    """The keys of ``**kwargs: Unpack[SomeTypedDict]``; None for open ``**kwargs``."""
    if typing.get_origin(hint) is typing.Unpack:
        return typing.get_type_hints(typing.get_args(hint)[0])
    return None


def _check_value(where: str, value: Any, hint: Any) -> None:
    if _fits(value, hint) is False:
        raise ConfigError(f"{where}={value!r} must be {_describe(hint)}")


def _fits(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` matches ``hint``; None when the hint cannot be checked here."""
    if hint is Any or hint is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, _UNION_TYPE):
        answers = [_fits(value, arg) for arg in args]
        return True if True in answers else (None if None in answers else False)
    if origin is typing.Literal:
        return value in args
    if isinstance(hint, type) and hint in _SCALARS:
        return _SCALARS[hint](value)
    if origin in (list, tuple, Sequence, typing.Sequence):
        if not isinstance(value, (list, tuple, ListConfig)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        answers = [_fits(v, inner[min(i, len(inner) - 1)]) for i, v in enumerate(value)] if inner else []
        return False if False in answers else True
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict, Mapping):
        return isinstance(value, (dict, Mapping)) or None
    if isinstance(hint, type) and (value is None or isinstance(value, (str, int, float, bool))):
        try:  # a plain value where a class (e.g. Tensor) is expected
            return isinstance(value, hint)
        except TypeError:  # protocols and the like
            return None
    return None


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, _UNION_TYPE):
        args = tuple(a for a in args if not (a is int and float in args))  # "a number" covers both
        return " or ".join(dict.fromkeys(_describe(a) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple, Sequence, typing.Sequence):
        inner = [a for a in args if a is not Ellipsis]
        return f"a list (each entry {_describe(inner[0])})" if inner else "a list"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, "null" if hint is type(None) else getattr(hint, "__name__", str(hint)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_UNION_TYPE = type(int | None)
_SCALARS: dict[Any, Callable[[Any], bool]] = {
    int: _is_int,
    float: _is_number,
    bool: lambda v: isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}
