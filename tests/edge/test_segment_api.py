"""The Segment Tracking API's edges on a running gateway: single-call routes, limits, gzip,
Basic auth, the same call shapes over MQTT, and an /openapi.json that documents every answer."""

from __future__ import annotations

import base64
import gzip
import json

import httpx
import pytest
from support.gateway import device_client, dumps, make_config, register, running_gateway, topic, wait_until

from edge import schema
from edge.http import roles_by_route

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("segment-api") / "state")
    creds = register(config, [("kiosk", "k1"), ("pos", "p1"), ("ops", "ops1")])
    with running_gateway(config, features=("edge.model", "edge.decisioning")) as handle:
        yield handle, creds


def _basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}


def test_single_call_routes_set_the_type_and_take_gzip_and_basic_auth(store):
    handle, creds = store
    headers = {**_basic(creds["k1"].http_token), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    calls = {
        "track": {"event": "Cart Viewed", "anonymousId": "v1", "messageId": "s-track"},
        "page": {"name": "Home", "anonymousId": "v1", "messageId": "s-page", "type": "track"},  # the route decides
        "screen": {"name": "Basket", "anonymousId": "v1", "messageId": "s-screen"},
        "identify": {"userId": "acct-77", "traits": {"plan": "gold", "lastName": "Q"}, "messageId": "s-identify"},
        "group": {"groupId": "g1", "anonymousId": "v1", "messageId": "s-group"},
        "alias": {"userId": "acct-77", "previousId": "v1", "messageId": "s-alias"},
    }
    with httpx.Client(base_url=handle.http, timeout=30) as client:
        for call, body in calls.items():
            answer = client.post(f"/v1/{call}", content=gzip.compress(json.dumps(body).encode()), headers=headers)
            assert answer.status_code == 200 and answer.json()["success"] is True, (call, answer.text)
        bearer = client.post(
            "/v1/track",
            json={"event": "Cart Viewed", "messageId": "s-bearer"},
            headers={"Authorization": f"Bearer {creds['k1'].http_token}"},
        )
        assert bearer.status_code == 200
    with schema.open_journal(handle.config) as journal:
        for call, body in calls.items():
            stored = json.loads(journal.get(body["messageId"]))
            assert stored["type"] == call
        identify = json.loads(journal.get("s-identify"))
        assert identify["traits"] == {"plan": "gold"} and identify["userId"].startswith("ct_")
        assert "acct-77" not in json.dumps(identify)


def test_limits_and_bad_encodings_are_refused_with_the_error_shape(store):
    handle, creds = store
    headers = {"Authorization": f"Bearer {creds['k1'].http_token}"}
    with httpx.Client(base_url=handle.http, headers=headers, timeout=30) as client:
        big_event = {"event": "Cart Viewed", "properties": {"blob": "x" * 33_000}}
        answer = client.post("/v1/track", json=big_event)
        assert answer.status_code == 400 and answer.json()["code"] == "too_large"
        answer = client.post(
            "/v1/batch", json={"batch": [{"event": "Cart Viewed", "properties": {"b": "x" * 30_000}}] * 18}
        )
        assert answer.status_code == 413
        body = answer.json()
        assert body["error"] == body["code"] == "too_large" and body["message"] == body["detail"]
        bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
        answer = client.post("/v1/batch", content=bomb, headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 413, "a gzip bomb is bounded like a plain body"
        answer = client.post("/v1/batch", content=b"not gzip", headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 400 and answer.json()["code"] == "bad_encoding"
        answer = client.post("/v1/batch", content=b"{}", headers={"Content-Encoding": "br"})
        assert answer.status_code == 400 and answer.json()["code"] == "bad_encoding"
        answer = client.get("/v1/no-such-route")
        assert answer.status_code == 404 and set(answer.json()) >= {"error", "detail", "code", "message"}
        answer = client.post("/v1/decisions", content=b"[1, 2")
        assert answer.status_code in (400, 422) and set(answer.json()) >= {"error", "detail", "code", "message"}
    answer = httpx.post(f"{handle.http}/v1/batch", json={"batch": []}, headers=_basic("edt_unknown"))
    assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
    answer = httpx.post(f"{handle.http}/v1/batch", json={"batch": []}, headers={"Authorization": "Basic !!notbase64"})
    assert answer.status_code == 401


def test_the_same_call_shapes_over_mqtt(store):
    handle, creds = store
    batch = {
        "writeKey": "dropped",
        "context": {"app": {"name": "pos-app"}},
        "batch": [
            {"type": "page", "name": "Till", "anonymousId": "v9", "messageId": "m-page"},
            {"type": "screen", "name": "Receipt", "anonymousId": "v9", "messageId": "m-screen"},
            {"type": "identify", "userId": "acct-9", "traits": {"email": "nine@sdk.test"}, "messageId": "m-identify"},
            {"type": "group", "groupId": "till-3", "anonymousId": "v9", "messageId": "m-group"},
            {"type": "alias", "userId": "acct-9", "previousId": "v9", "messageId": "m-alias"},
            {"type": "track", "event": "Order Completed", "anonymousId": "v9", "messageId": "m-order"},
        ],
    }
    with device_client(handle, creds["p1"]) as client:
        client.publish(topic(handle, creds["p1"], "events"), dumps(batch), qos=1).wait_for_publish(10)
    with schema.open_journal(handle.config) as journal:
        wait_until(lambda: journal.get("m-order") is not None)
        for event in batch["batch"]:
            assert json.loads(journal.get(event["messageId"]))["type"] == event["type"]
        identify = journal.get("m-identify")
        assert "nine@sdk.test" not in identify and "acct-9" not in identify


def test_openapi_documents_every_body_and_every_answer(store):
    handle, _creds = store
    spec = httpx.get(f"{handle.http}/openapi.json").json()
    roles = roles_by_route(handle.gateway.app)
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and {"detail", "code", "message"} <= set(error["properties"])
    for path in (
        "/v1/events",
        "/v1/batch",
        "/v1/track",
        "/v1/identify",
        "/v1/page",
        "/v1/screen",
        "/v1/group",
        "/v1/alias",
    ):
        assert spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"], path
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert "200" in answers or "201" in answers or "204" in answers, (method, path)
            if roles.get((method.upper(), path)) is None:
                continue
            expected = {"401", "403", "422", "503"} | ({"400", "413"} if method in ("post", "put", "patch") else set())
            assert expected <= set(answers), (method, path, sorted(answers))
            for code in expected:
                schema_ref = answers[code]["content"]["application/json"]["schema"]["$ref"]
                assert schema_ref == "#/components/schemas/Error"
            if method in ("post", "put", "patch"):
                assert "requestBody" in operation, (method, path)
            checked += 1
    assert checked >= 10
