"""The HTTP service under hostile input: bodies over the limit get 413 unread, deep
nesting gets 400, and no input makes it answer 500 or drop the connection."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from hydra import compose, initialize_config_dir

from tests.helpers import CONF_DIR
from tests.serving_runs import serving, trained_run
from train.serving import load_recommender
from train.serving.http import MAX_BODY_BYTES, RecommenderService, build_app, create_app

LIMIT = 2000


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return {name: trained_run(tmp_path_factory.mktemp(name) / "run", name) for name in ("neumf", "sasrec")}


@pytest.fixture(scope="module", params=["neumf", "sasrec"])
def service(request, runs) -> Iterator[tuple[str, object]]:
    model, ctx = load_recommender(runs[request.param])
    with serving(create_app(RecommenderService(model, ctx, max_request_items=50), max_body_bytes=LIMIT)) as url:
        yield url, ctx


def post(url: str, body: bytes | Iterator[bytes], **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/recommend", content=body, headers={"content-type": "application/json", **headers},
                      timeout=60)


def valid_body(ctx) -> dict:
    return {"user": ctx.data.user_ids[0].item(), "k": 3}


def test_a_body_over_the_limit_gets_413_and_the_service_goes_on(service) -> None:
    url, ctx = service
    padded = json.dumps(valid_body(ctx)).encode().ljust(LIMIT - 10)  # JSON allows trailing spaces
    assert post(url, padded).status_code == 200
    response = post(url, padded.ljust(LIMIT * 3))
    assert response.status_code == 413
    assert f"limit of {LIMIT} bytes" in response.json()["detail"]
    assert post(url, padded).status_code == 200


def test_a_chunked_body_over_the_limit_gets_413(service) -> None:
    url, _ = service

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size shows only while reading
        yield b'{"user": 1, "pad": "'
        for _ in range(20):
            yield b"x" * 500
        yield b'"}'

    response = post(url, chunks())
    assert response.status_code == 413 and "exceeds the limit" in response.json()["detail"]


NESTED = {
    "arrays": b"[" * 100_000 + b"]" * 100_000,
    "objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "inside_a_field": b'{"user": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
}


@pytest.mark.parametrize("shape", sorted(NESTED))
def test_deeply_nested_json_gets_400(runs, shape: str) -> None:
    model, ctx = load_recommender(runs["neumf"])
    with serving(create_app(RecommenderService(model, ctx))) as url:  # default 1 MiB limit
        response = post(url, NESTED[shape])
        assert response.status_code == 400, response.text
        assert "nested too deeply" in response.json()["detail"]
        assert post(url, json.dumps(valid_body(ctx)).encode()).status_code == 200


BAD_BODIES: list[bytes] = [
    b"", b" ", b"null", b"true", b"1", b'"x"', b"[]", b"{}", b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"\x80\x81",
    b'{"user": ' + b"9" * 5000 + b"}", b'{"user": 1, "k": ' + b"9" * 5000 + b"}",
    b'{"user": 1e999}', b'{"user": NaN}', b'{"user": Infinity}', b'{"user": -Infinity}', b'{"user": 1.5}',
    b'{"user": true}', b'{"user": null}', b'{"user": {}}', b'{"user": "\\ud800"}', b'{"user": "\\udfff\\ud800"}',
    b'{"history": ["\\ud800"]}', b'{"history": [1, "\\udc00"]}', b'{"user": 1, "exclude": ["\\ud800"]}',
    b'{"user": "\\u0000"}', b'{"user": "' + b"z" * 1500 + b'"}', b'{"user": 1, "k": -99999999999999999999}',
    b'{"user": 1, "k": 1e400}', b'{"user": 1, "exclude": {"a": 1}}', b'{"user": 1, "exclude": [[[[1]]]]}',
    b'{"history": [' + b"[" * 900 + b"]" * 900 + b"]}", b'{"history": "1,2,3"}', b'{"user": 1, "user": 2, "k": 0}',
    b'{"user": 99999999999999999999999999999}', b'{"history": [99999999999999999999999999999]}',
    b'{"user": -1}', b'{"user": 1, "exclude_seen": "no"}', b'{"' + b"k" * 1000 + b'": 1}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=[f"body{i}" for i in range(len(BAD_BODIES))])
def test_bad_input_never_gets_a_500(service, body: bytes) -> None:
    url, _ = service
    response = post(url, body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["detail"]


def test_the_limit_comes_from_conf_serve_yaml(runs) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="serve", overrides=[f"run={runs['neumf']}"])
        small = compose(config_name="serve", overrides=[f"run={runs['neumf']}", "max_body_bytes=100"])
    assert cfg.max_body_bytes == MAX_BODY_BYTES == 1 << 20
    with serving(build_app(small)) as url:
        assert post(url, b'{"user": 1}'.ljust(101)).status_code == 413
    with serving(build_app(cfg)) as url:
        assert post(url, b'{"user": 1}'.ljust(MAX_BODY_BYTES)).status_code != 413
        assert post(url, b'{"user": 1}'.ljust(MAX_BODY_BYTES + 1)).status_code == 413
