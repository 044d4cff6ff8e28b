"""The HTTP service over real HTTP: answers equal direct scoring, bad requests get 4xx."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.serving_runs import free_port, randomise_, serving, trained_run
from train.serving import load_recommender
from train.serving.http import RecommenderService, create_app

@pytest.fixture(scope="module")
def neumf_run(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory.mktemp("neumf") / "run", "neumf")


@pytest.fixture(scope="module")
def neumf(neumf_run: Path):
    model, ctx = load_recommender(neumf_run)
    with serving(create_app(RecommenderService(model, ctx, max_request_items=5))) as url:
        yield url, model, ctx


@pytest.fixture(scope="module")
def sasrec(tmp_path_factory):
    run = trained_run(tmp_path_factory.mktemp("sasrec") / "run", "sasrec")
    model, ctx = load_recommender(run)
    randomise_(model)  # well-separated scores: orderings are unambiguous
    with serving(create_app(RecommenderService(model, ctx, max_request_items=20))) as url:
        yield url, model, ctx


def expected_top(scores: torch.Tensor, excluded: list[int], k: int) -> tuple[list[int], np.ndarray]:
    """Brute force: mask, full stable sort."""
    scores = scores.clone().double()
    scores[excluded] = float("-inf")
    order = torch.sort(scores, descending=True, stable=True).indices[:k]
    order = order[scores[order] > float("-inf")]
    return order.tolist(), scores[order].numpy()


def test_health(neumf) -> None:
    url, _, ctx = neumf
    body = httpx.get(f"{url}/health").json()
    assert body["status"] == "ok" and body["model"] == "neumf"
    assert body["num_items"] == ctx.data.num_items
    assert body["accepts"] == {"user": True, "history": False}


def test_user_recommendation_equals_direct_scoring(neumf) -> None:
    url, model, ctx = neumf
    internal = 4
    raw_user = ctx.data.user_ids[internal].item()
    seen = ctx.known.of(internal).tolist()
    with torch.no_grad():
        scores = model.score_all({"user": torch.tensor([internal])})[0]
    unseen_best, _ = expected_top(scores, seen, 1)
    extra = [ctx.data.item_ids[unseen_best[0]].item()]  # exclude the best unseen item by raw id
    response = httpx.post(f"{url}/recommend", json={"user": raw_user, "k": 6, "exclude": extra})
    assert response.status_code == 200, response.text
    body = response.json()
    items, values = expected_top(scores, seen + unseen_best, 6)
    assert body["user"] == raw_user
    assert body["items"] == ctx.data.item_ids[items].tolist()
    np.testing.assert_allclose(body["scores"], values, rtol=1e-5)
    # The same user given as a string id; seen items allowed back in.
    body = httpx.post(f"{url}/recommend", json={"user": str(raw_user), "k": 3, "exclude_seen": False}).json()
    assert body["items"] == ctx.data.item_ids[expected_top(scores, [], 3)[0]].tolist()


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ('{"user": 1, "k": 3', 400, "not valid JSON"),
        ("[1, 2]", 422, "JSON object"),
        ({"user": 987654}, 404, "unknown user id 987654"),
        ({"user": 1, "exclude": ["nope", -3]}, 422, "unknown item id(s) in 'exclude': ['nope', -3]"),
        ({"user": 1, "k": 0}, 422, "k=0"),
        ({"user": 1, "k": 10_000}, 422, "exceeds the catalogue"),
        ({"user": 1, "k": "ten"}, 422, "k: Input should be a valid integer"),
        ({"user": [1]}, 422, "user: must be an id"),
        ({"user": 1, "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
        ({"k": 3}, 422, "exactly one of 'user'"),
        ({"history": [1, 2]}, 422, "scores known users only"),
        ({"user": 1, "exclude": [1, 2, 3, 4, 5, 6]}, 422, "at most 5"),
    ],
)
def test_bad_requests_get_clear_4xx(neumf, payload, status: int, needle: str) -> None:
    url = neumf[0]
    if isinstance(payload, str):
        response = httpx.post(f"{url}/recommend", content=payload, headers={"content-type": "application/json"})
    else:
        response = httpx.post(f"{url}/recommend", json=payload)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


def test_history_recommendation_equals_direct_scoring(sasrec) -> None:
    url, model, ctx = sasrec
    internal = [3, 9, 3, 17, 1, 2, 5, 8, 11, 12, 20, 21]  # longer than the model's max_len
    assert len(internal) > ctx.max_history
    raw_items = ctx.data.item_ids[internal].tolist()
    response = httpx.post(f"{url}/recommend", json={"history": raw_items, "k": 5, "exclude": [raw_items[0]]})
    assert response.status_code == 200, response.text
    history = torch.tensor([internal[-ctx.max_history:]])
    with torch.no_grad():
        scores = model.score_all({"history": history})[0]
    items, values = expected_top(scores, internal, 5)  # history and the excluded item
    body = response.json()
    assert body["items"] == ctx.data.item_ids[items].tolist()
    np.testing.assert_allclose(body["scores"], values, rtol=1e-5)
    # A known user's request uses the stored history.
    user = 2
    stored = torch.from_numpy(ctx.known.padded(np.array([user]), ctx.max_history))
    with torch.no_grad():
        scores = model.score_all({"history": stored})[0]
    items, _ = expected_top(scores, ctx.known.of(user).tolist(), 4)
    body = httpx.post(f"{url}/recommend", json={"user": ctx.data.user_ids[user].item(), "k": 4}).json()
    assert body["items"] == ctx.data.item_ids[items].tolist()


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"history": []}, "'history' is empty"),
        ({"history": list(range(21))}, "'history' has 21 items; at most 20"),
        ({"history": [0, "unknown-item"]}, "unknown item id(s) in 'history': ['unknown-item']"),
        ({"history": [0], "user": 1}, "exactly one of"),
    ],
)
def test_bad_histories(sasrec, payload, needle: str) -> None:
    response = httpx.post(f"{sasrec[0]}/recommend", json=payload)
    assert response.status_code == 422
    assert needle in response.json()["detail"]


def test_cli_serves_over_http(neumf_run: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.cli.serve", f"run={neumf_run}", "host=127.0.0.1", f"port={port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode()[-2000:]) from None
                time.sleep(0.2)
        assert health.json()["model"] == "neumf"
        body = httpx.post(f"http://127.0.0.1:{port}/recommend", json={"user": 0, "k": 2}).json()
        assert len(body["items"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
