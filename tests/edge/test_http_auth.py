"""HTTP authorization: every endpoint × role (none, wrong token, each role) gives the right code."""

from __future__ import annotations

import re

import httpx
import pytest
from support.gateway import make_config, register, running_gateway

from edge.auth import ALL_ROLES
from edge.http import roles_by_route

pytestmark = pytest.mark.integration

OPEN = {
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    # the store pages' static files, and pairing's two steps a device takes before it has a token
    "/pages",
    "/pages/",
    "/pages/{page}",
    "/pages/static/{name}",
    "/v1/pairing",
    "/v1/pairing/{code}",
}
SAMPLE = {"userId": "ct_" + "0" * 32, "decisionId": "d-1", "offerId": "o-1", "sink": "http"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("auth") / "state")
    creds = register(config, [(role, f"{role}-1") for role in sorted(ALL_ROLES)])
    with running_gateway(config, features=tuple(config.features.enabled)) as handle:
        yield handle, {role: creds[f"{role}-1"].http_token for role in ALL_ROLES}


def _path(template: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: SAMPLE.get(m.group(1), SAMPLE["userId"]), template)


def test_every_endpoint_and_role(gateway):
    handle, tokens = gateway
    app_routes = roles_by_route(handle.gateway.app)
    assert ("POST", "/v1/events") in app_routes and ("GET", "/metrics") in app_routes
    checked = 0
    with httpx.Client(base_url=handle.http, timeout=30) as client:
        for (method, template), roles in sorted(app_routes.items()):
            if method == "WEBSOCKET":
                continue  # checked in the WebSocket tests
            path = _path(template)
            if roles is None:
                assert template in OPEN or template == "/v1/stream", f"{method} {template} has no role check"
                if template in OPEN:
                    assert client.request(method, path).status_code not in (401, 403)
                continue
            assert client.request(method, path, json={}).status_code == 401, f"{method} {path} without token"
            wrong = client.request(method, path, json={}, headers={"Authorization": "Bearer edt_wrong"})
            assert wrong.status_code == 401 and wrong.json()["error"]
            for role, token in tokens.items():
                code = client.request(method, path, json={}, headers={"Authorization": f"Bearer {token}"}).status_code
                if role in roles:
                    assert code not in (401, 403), f"{role} refused on {method} {path}"
                else:
                    assert code == 403, f"{role} got {code} on {method} {path}"
                checked += 1
    assert checked >= 5 * 3


def test_events_over_http_answer_after_commit(gateway):
    handle, tokens = gateway
    headers = {"Authorization": f"Bearer {tokens['kiosk']}"}
    batch = {
        "batch": [
            {"messageId": "h-1", "event": "Cart Viewed"},
            {"event": "Nope"},
            {"messageId": "h-1", "event": "Cart Viewed"},
        ]
    }
    response = httpx.post(f"{handle.http}/v1/events", json=batch, headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1 and body["duplicates"] == 1
    assert body["rejected"] == [
        {"index": 1, "reason": "unknown_event", "detail": "event name 'Nope' is not a known event"}
    ]
    too_big = httpx.post(f"{handle.http}/v1/events", content=b"x" * 600_000, headers=headers)
    assert too_big.status_code == 413 and too_big.json()["error"] == "too_large"
    garbage = httpx.post(f"{handle.http}/v1/events", content=b"\xff\x00garbage", headers=headers)
    assert garbage.status_code == 400 and garbage.json()["rejected"][0]["reason"] == "invalid_json"
    metrics = httpx.get(f"{handle.http}/metrics", headers={"Authorization": f"Bearer {tokens['ops']}"}).text
    assert 'edge_events_rejected_total{reason="too_large",transport="http"} 1.0' in metrics
    assert 'edge_events_accepted_total{transport="http"}' in metrics
    assert "edge_journal_commit_seconds_bucket" in metrics and "edge_ingest_queue_depth" in metrics
