"""schemathesis (PyPI) generates requests from the gateway's own /openapi.json — every
operation, bodies valid and not — and sends each with every role's token (and none): no answer
is a 5xx. Bounded to a few examples per operation so it stays well under a minute."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from support.gateway import make_config, register, running_gateway

from edge.auth import ALL_ROLES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("schemathesis") / "state")
    creds = register(config, [(role, f"{role}-1") for role in sorted(ALL_ROLES)])
    with running_gateway(config, features=tuple(config.features.enabled)) as handle:
        yield handle, {role: creds[f"{role}-1"].http_token for role in sorted(ALL_ROLES)}


def test_no_operation_answers_a_server_error_for_any_role(gateway):
    handle, tokens = gateway
    api = schemathesis.openapi.from_url(f"{handle.http}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15
    calls = 0

    for operation in operations:

        @settings(
            max_examples=6,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(case=operation.as_strategy())
        def send(case):
            nonlocal calls
            for token in (None, *tokens.values()):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = case.call(base_url=handle.http, headers=headers, timeout=30)
                calls += 1
                assert response.status_code < 500 or (response.status_code == 503 and case.path == "/readyz"), (
                    case.method,
                    case.path,
                    response.status_code,
                    response.text[:300],
                )

        send()
    assert calls >= len(operations) * len(tokens)
