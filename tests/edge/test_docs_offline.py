"""/docs and /redoc render without internet: every asset they load is served by the gateway."""

from __future__ import annotations

import re

import httpx
import pytest
from support.gateway import make_config, running_gateway

pytestmark = pytest.mark.integration


def test_docs_and_redoc_load_only_local_assets(tmp_path):
    with running_gateway(make_config(tmp_path / "state")) as handle:
        with httpx.Client(base_url=handle.http) as client:
            for page, needed in (
                ("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")),
                ("/redoc", ("redoc.standalone.js",)),
            ):
                html = client.get(page)
                assert html.status_code == 200 and "text/html" in html.headers["content-type"]
                urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\\s*['"]([^'"]+)['"]""", html.text)
                referenced = [a or b for a, b in urls]
                assert referenced and not [u for u in referenced if u.startswith(("http:", "https:", "//"))], referenced
                assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text
                for name in needed:
                    asset = next(u for u in referenced if u.endswith(name))
                    body = client.get(asset)
                    assert body.status_code == 200 and len(body.content) > 50_000, asset
            assert client.get("/openapi.json").json()["info"]["title"] == "Edge gateway"
