"""kopf's watch streams decode with orjson (fastjson.py), to the same objects as the standard library's json."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterator

import orjson
import pytest

from scaledapp import fastjson

WATCH_LINE = json.dumps({"type": "MODIFIED", "object": {
    "apiVersion": "apps/v1", "kind": "StatefulSet",
    "metadata": {"name": "shop-db-primary", "namespace": "default", "uid": "0b3c1e3a-7d9a-4c1b-9a4e-2f1e6f3b9c11",
                 "resourceVersion": "123456", "generation": 3, "labels": {"app.kubernetes.io/instance": "shop"},
                 "managedFields": [{"manager": "scaledapp-operator", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
    "spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "postgres", "image": "postgres:18", "args": ["-c", "ssl=on"], "env": [{"name": "É", "value": "ü"}],
         "resources": {"requests": {"cpu": "250m"}}}]}}},
    "status": {"readyReplicas": 1, "availableReplicas": 1.0, "ok": True, "none": None}}}, ensure_ascii=False)


@pytest.fixture
def kopf_stream_module() -> Iterator[object]:
    module = importlib.import_module(fastjson.KOPF_STREAM_MODULE)
    before = module.json
    yield module
    module.json = before


def test_kopf_reads_its_watch_lines_where_the_patch_expects() -> None:
    # If a kopf upgrade moves its decoding, this fails rather than the operator silently losing the speed-up.
    module = importlib.import_module(fastjson.KOPF_STREAM_MODULE)
    assert "json.loads(line" in inspect.getsource(module.stream)


def test_kopf_decodes_watch_lines_with_orjson_to_the_same_objects(kopf_stream_module: object) -> None:
    assert fastjson.decode_kopf_watches()
    patched = kopf_stream_module.json  # type: ignore[attr-defined]
    assert patched.loads is orjson.loads
    assert patched.loads(WATCH_LINE) == json.loads(WATCH_LINE)
    assert patched.dumps is json.dumps and patched.JSONDecodeError is json.JSONDecodeError
    with pytest.raises(json.JSONDecodeError):  # what kopf would catch from json, it still gets
        patched.loads('{"type": "ADDED", "object": {')
    assert fastjson.decode_kopf_watches(), "a second start in the same process keeps it"
    assert kopf_stream_module.json is patched  # type: ignore[attr-defined]


def test_a_kopf_that_decodes_otherwise_is_left_as_it_is(kopf_stream_module: object) -> None:
    other = object()
    kopf_stream_module.json = other  # type: ignore[attr-defined]
    assert not fastjson.decode_kopf_watches()
    assert kopf_stream_module.json is other  # type: ignore[attr-defined]
