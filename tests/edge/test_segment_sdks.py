"""The real Segment and RudderStack SDKs against a running gateway, unchanged.

``segment-analytics-python`` and ``rudder-sdk-python`` (PyPI) and ``@segment/analytics-node``
(npm, run with Debian's nodejs) each send every call type — track, identify, page, screen,
group, alias — to ``/v1/batch`` with the device token as write key (HTTP Basic), the Python ones
gzip-compressed. Between SDK and gateway a proxy loses the first answers after the gateway has
committed them, so every SDK retries batches that are already stored: each call lands in the
journal once, with the right type and name, the app's userId and the e-mail trait tokenised
and the personal trait dropped. The error bodies are the ones the SDKs parse (``code``,
``message``): a refused batch is an ``APIError`` naming the reason, not a ``KeyError``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.gateway import make_config, register, running_gateway, wait_until
from support.proxy import dropping_proxy

from edge import schema

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "tests" / ".node" / "node_modules"
CALLS = [
    ("track", "Product Viewed"),
    ("identify", None),
    ("page", "Home"),
    ("screen", "Basket"),
    ("group", None),
    ("alias", None),
    ("track", "Order Completed"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("segment") / "state")
    creds = register(config, [("kiosk", "app-py"), ("kiosk", "app-rudder"), ("kiosk", "app-node"), ("ops", "ops1")])
    with running_gateway(config, features=("edge.model", "edge.decisioning")) as handle:
        yield handle, creds


@pytest.fixture(autouse=True)
def quiet_sdk_debug_logs():
    # the SDKs log every request body at DEBUG ("making request: …"): the app's own data, not
    # the gateway's; keep it out of the captured logs the privacy check scans
    loggers = [logging.getLogger(name) for name in ("segment", "rudderstack", "analytics", "backoff", "urllib3")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def _send_python(module, host: str, write_key: str, run: str) -> list[str]:
    errors: list[str] = []
    client = module.Client(
        write_key,
        host=host,
        gzip=True,
        max_retries=6,
        timeout=10,
        on_error=lambda exc, batch: errors.append(repr(exc)),
        upload_interval=0.2,
    )
    user = f"py-user-{run}"
    client.track(user, "Product Viewed", {"sku": "SKU00001", "run": run})
    client.identify(user, {"email": f"py.{run}@sdk.test", "firstName": "Pythonia", "plan": "gold"})
    client.page(user, "Store", "Home", {"run": run})
    client.screen(user, "Store", "Basket", {"run": run})
    client.group(user, f"grp-{run}", {"plan": "b"})
    client.alias(f"anon-{run}", user)
    client.track(event="Order Completed", properties={"order_id": f"o-{run}", "total": 3}, anonymous_id=f"anon-{run}")
    client.flush()
    client.join()
    return errors


def _journaled(handle, device: str) -> list[dict]:
    with schema.open_journal(handle.config) as journal:
        rows = (
            journal.reader()
            .execute("SELECT type, event, body FROM events WHERE device_id = ? ORDER BY seq", (device,))
            .fetchall()
        )
    return [dict(json.loads(body), _type=kind, _event=name) for kind, name, body in rows]


def _check(handle, device: str, user_raw: str, email: str) -> None:
    try:
        wait_until(lambda: len(_journaled(handle, device)) >= len(CALLS), timeout=30)
    except TimeoutError:
        with schema.open_journal(handle.config) as journal:
            letters = [d for d in journal.dead_letters() if device in d["source"]]
        raise AssertionError(([(s["_type"], s["_event"]) for s in _journaled(handle, device)], letters)) from None
    stored = _journaled(handle, device)
    assert len(stored) == len(CALLS), [(s["_type"], s["_event"]) for s in stored]  # none twice
    assert len({s["messageId"] for s in stored}) == len(CALLS)
    got = sorted((s["_type"], s.get("event") or s.get("name")) for s in stored)
    assert got == sorted(CALLS), got
    identity = handle.gateway.features.decisioning.identity
    token = identity.token("userId", user_raw)
    by_type = {s["_type"]: s for s in stored}
    assert by_type["identify"]["userId"] == token
    # Segment's SDKs send identify traits as `traits`, RudderStack's as `context.traits`
    traits = by_type["identify"].get("traits") or by_type["identify"]["context"]["traits"]
    assert traits == {"email": identity.token("email", email), "plan": "gold"}
    assert by_type["alias"]["userId"] == token and by_type["alias"]["previousId"].startswith("anon-")
    assert by_type["group"]["groupId"].startswith("grp-")
    text = json.dumps(stored)
    assert user_raw not in text and email not in text and "writeKey" not in text
    assert all(s["deviceId"] == device for s in stored)


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
def test_python_sdks_send_every_call_type_once_through_lost_answers(store, sdk):
    handle, creds = store
    device = "app-py" if sdk == "segment" else "app-rudder"
    module = pytest.importorskip("segment.analytics" if sdk == "segment" else "rudderstack.analytics")
    with dropping_proxy(handle.http, drop=2) as (url, counters):
        errors = _send_python(module, url, creds[device].http_token, sdk)
    assert not errors, errors
    assert counters["dropped"] == 2 and counters["requests"] >= 3  # the SDK retried what was stored
    _check(handle, device, f"py-user-{sdk}", f"py.{sdk}@sdk.test")


def test_node_sdk_sends_every_call_type_once_through_lost_answers(store):
    handle, creds = store
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None or not (NODE_MODULES / "@segment" / "analytics-node").exists():
        if os.environ.get("CI"):
            pytest.fail("nodejs or @segment/analytics-node missing: .ci/bootstrap installs them")
        pytest.skip("nodejs or @segment/analytics-node missing (run .ci/bootstrap test)")
    with dropping_proxy(handle.http, drop=1) as (url, counters):
        out = subprocess.run(
            [
                node,
                str(ROOT / "tests" / "edge" / "segment_node_client.js"),
                str(NODE_MODULES),
                url,
                creds["app-node"].http_token,
                "n1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"failures": []}, out.stderr
    assert counters["dropped"] == 1 and counters["requests"] >= 2
    _check(handle, "app-node", "node-user-n1", "node.n1@sdk.test")


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
def test_sdks_read_the_gateways_error_bodies(store, sdk):
    handle, creds = store
    module = pytest.importorskip(f"{'segment' if sdk == 'segment' else 'rudderstack'}.analytics.request")
    with pytest.raises(module.APIError) as info:
        module.post(
            creds["app-py"].http_token,
            host=handle.http,
            gzip=True,
            batch=[{"type": "track", "event": "Teleported", "messageId": f"bad-{sdk}"}],
        )
    assert info.value.status == 400 and info.value.code == "unknown_event"
    with pytest.raises(module.APIError) as info:
        module.post("edt_not_a_token", host=handle.http, batch=[{"type": "track", "event": "Cart Viewed"}])
    assert info.value.status == 401 and info.value.code == "unauthorized"
    with pytest.raises(module.APIError) as info:
        module.post(creds["ops1"].http_token, host=handle.http, batch=[{"type": "track", "event": "Cart Viewed"}])
    assert info.value.status == 403 and info.value.code == "forbidden"
