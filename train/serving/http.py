"""Recommendations over HTTP (``recflow-serve``): a FastAPI app around one loaded run.

Endpoints (JSON):

- ``GET /health``: model name, catalogue size, which request kinds it accepts.
- ``POST /recommend`` with ``{"user": ID, "k": 10, "exclude": [IDs]}``: top-``k`` for a
  known user (their history is the context; items they have seen are excluded unless
  ``"exclude_seen": false``).
- ``POST /recommend`` with ``{"history": [IDs], "k": 10, "exclude": [IDs]}``: top-``k``
  for an ad-hoc history (sequence models and others that do not need a user id);
  history items are excluded unless ``"exclude_seen": false``.

Ids are raw ids as in the source data. Bad requests get a 4xx status and a ``detail``
that names the problem: 400 malformed JSON (also nested too deeply, or a number too
long to read), 404 unknown user, 413 a body over ``max_body_bytes`` (read no further),
422 everything else. No input makes the service answer 500.
Ranking goes through :func:`train.serving.recommend`, as batch inference does.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from omegaconf import DictConfig
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError
from starlette.concurrency import run_in_threadpool

from recmodels.base import Recommender
from train.serving import RunContext, known_pairs, load_recommender, recommend
from train.serving.quantized_index import check_mode, prepare_index

log = logging.getLogger(__name__)
RawId = StrictInt | str
MAX_BODY_BYTES = 1 << 20  # a request names at most a few thousand ids


class RecommendRequest(BaseModel):
    """Body of ``POST /recommend``: exactly one of ``user`` or ``history``."""

    model_config = ConfigDict(extra="forbid")
    user: RawId | None = None
    history: list[RawId] | None = None
    k: StrictInt = 10
    exclude: list[RawId] = Field(default_factory=list)
    exclude_seen: StrictBool = True


class RequestError(Exception):
    """A request the service refuses; ``status`` is the HTTP code."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class RecommenderService:
    """Validates requests in raw ids and ranks them with the shared top-K path."""

    def __init__(
        self, model: Recommender, ctx: RunContext, max_request_items: int = 1000, index: str = "auto"
    ) -> None:
        self.model, self.ctx = model, ctx
        self.max_request_items = int(max_request_items)
        self.index = check_mode(index)

    def health(self) -> dict[str, Any]:
        ctx = self.ctx
        return {
            "status": "ok",
            "model": ctx.model_name,
            "num_users": ctx.data.num_users,
            "num_items": ctx.data.num_items,
            "accepts": {"user": True, "history": ctx.accepts_history_only},
            "max_history": ctx.max_history,
            "max_request_items": self.max_request_items,
        }

    def handle(self, req: RecommendRequest) -> dict[str, Any]:
        if (req.user is None) == (req.history is None):
            raise RequestError(422, "give exactly one of 'user' (a known user id) or 'history' (a list of item ids)")
        self._check_k(req.k)
        exclude = self._items(req.exclude, "exclude")
        if req.user is not None:
            return self._for_user(req, exclude)
        return self._for_history(req, exclude)

    def _check_k(self, k: int) -> None:
        if k < 1:
            raise RequestError(422, f"k={k}: ask for at least 1 item")
        if k > self.ctx.data.num_items:
            raise RequestError(422, f"k={k} exceeds the catalogue of {self.ctx.data.num_items} items")

    def _items(self, raw: list[RawId], field: str) -> np.ndarray:
        if len(raw) > self.max_request_items:
            raise RequestError(
                422, f"'{field}' has {len(raw)} items; at most {self.max_request_items} are accepted"
            )
        internal = self.ctx.items.to_internal(raw)
        if (internal < 0).any():
            unknown = np.asarray(raw, dtype=object)[internal < 0].tolist()
            raise RequestError(422, f"unknown item id(s) in '{field}': {unknown[:10]}")
        return internal

    def _for_user(self, req: RecommendRequest, exclude: np.ndarray) -> dict[str, Any]:
        user = self.ctx.users.to_internal([req.user])
        if user[0] < 0:
            raise RequestError(404, f"unknown user id {req.user!r}; send a user seen in training or a 'history'")
        rows, items = known_pairs(self.ctx.known, user) if req.exclude_seen else _no_pairs()
        pairs = _concat_pairs((rows, items), exclude)
        return {"user": req.user, **self._rank(self.ctx.user_context(user), req.k, pairs)}

    def _for_history(self, req: RecommendRequest, exclude: np.ndarray) -> dict[str, Any]:
        if not self.ctx.accepts_history_only:
            raise RequestError(422, f"model {self.ctx.model_name} scores known users only; send 'user' instead of 'history'")
        if not req.history:
            raise RequestError(422, "'history' is empty; send at least one item id")
        history = self._items(req.history, "history")
        seen = history if req.exclude_seen else np.empty(0, dtype=np.int64)
        pairs = _concat_pairs(_no_pairs(), np.concatenate([seen, exclude]))
        return self._rank(self.ctx.history_context([history]), req.k, pairs)

    def _rank(self, context: dict[str, torch.Tensor], k: int, pairs: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
        items, scores = recommend(self.model, context, k, pairs, index=self.index)
        items, scores = items[0].cpu().numpy(), scores[0].cpu().numpy()
        keep = items >= 0  # fewer than k items left after exclusion
        return {
            "items": self.ctx.items.to_raw(items[keep]).tolist(),
            "scores": scores[keep].astype(float).tolist(),
        }


def _no_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    empty = torch.empty(0, dtype=torch.long)
    return empty, empty


def _concat_pairs(pairs: tuple[torch.Tensor, torch.Tensor], extra_items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Add items to exclude for batch row 0 to existing (row, item) pairs."""
    extra = torch.from_numpy(np.asarray(extra_items, dtype=np.int64))
    return torch.cat([pairs[0], torch.zeros_like(extra)]), torch.cat([pairs[1], extra])


def create_app(service: RecommenderService, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI app. The body is read (up to ``max_body_bytes``) and parsed here (any
    content type) so that malformed JSON and schema errors get one clear message;
    ranking runs in the thread pool."""
    app = FastAPI(title="recflow", description="Top-K recommendations from a trained recflow run")

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.detail})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.post("/recommend")
    async def recommend_endpoint(request: Request) -> dict[str, Any]:
        req = parse_request(await read_body(request, max_body_bytes))
        return await run_in_threadpool(service.handle, req)

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes (from
    Content-Length, or while streaming a chunked body), so a huge body is never held."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body: bytes) -> RecommendRequest:
    """JSON body -> request; 400 if it is not JSON, 422 naming each bad field otherwise."""
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise RequestError(400, "request body is nested too deeply; send a flat JSON object") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise RequestError(400, f"request body could not be read as JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise RequestError(422, 'the body must be a JSON object, e.g. {"user": 1, "k": 10}')
    try:
        req = RecommendRequest.model_validate(payload)
    except ValidationError as exc:
        raise RequestError(422, "; ".join(_problems(exc.errors()))) from None
    _check_text_ids(req)
    return req


def _check_text_ids(req: RecommendRequest) -> None:
    """String ids must be valid Unicode (JSON allows lone surrogates such as "\\ud800")."""
    for field in ("user", "history", "exclude"):
        value = getattr(req, field)
        for raw in value if isinstance(value, list) else [value]:
            if isinstance(raw, str) and not _encodable(raw):
                raise RequestError(422, f"'{field}' holds a string id that is not valid Unicode text")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _problems(errors: list[dict[str, Any]]) -> list[str]:
    """One 'field: problem' line per field; an id that is neither int nor string says so once."""
    out: dict[str, str] = {}
    for error in errors:
        loc = [str(p) for p in error["loc"]]
        if loc and loc[-1] in ("int", "str"):
            out[".".join(loc[:-1])] = "must be an id (a JSON integer or string)"
        else:
            out.setdefault(".".join(loc) or "body", error["msg"])
    return [f"{where}: {msg}" for where, msg in out.items()]


def build_app(cfg: DictConfig) -> FastAPI:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    model, ctx = load_recommender(cfg.run, cfg.get("ckpt"), cfg.get("device", "cpu"))
    limit = int(cfg.get("max_body_bytes") or MAX_BODY_BYTES)
    service = RecommenderService(model, ctx, int(cfg.max_request_items), str(cfg.get("index") or "auto"))
    prepare_index(model, service.index)
    return create_app(service, max_body_bytes=limit)
