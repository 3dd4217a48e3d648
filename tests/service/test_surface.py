"""The smaller findings of the second review (item 8): what the page and the API expose."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from bitzero.service.app import STATIC

CHAT = "/v1/chat/completions"


def test_docs_load_a_pinned_swagger_ui_checked_by_integrity(client: TestClient) -> None:
    page = client.get("/docs").text
    sources = re.findall(r'(?:src|href)="(https://[^"]+)"', page)
    assert sources and all("@5.36.0/" in url for url in sources)  # never a floating version
    assert page.count('integrity="sha384-') == len(sources) == 2
    assert client.get("/redoc").status_code in (403, 404)


def test_no_response_may_be_framed(client: TestClient) -> None:
    for response in (client.get("/"), client.get("/v1/privacy"), client.get("/", headers={"Host": "evil.example"})):
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("host", ["localhost:80@evil.example", "localhost evil.example", "localhost:80/x",
                                  "127.0.0.1:8000:9", "::1", "localhost:"])
def test_malformed_host_is_refused(client: TestClient, host: str) -> None:
    assert client.get("/v1/privacy", headers={"Host": host}).status_code == 403


def test_the_api_key_is_kept_for_the_tab_only() -> None:
    script = (STATIC / "app.js").read_text()
    assert "localStorage" not in script and 'sessionStorage.getItem("bitzero-key")' in script


@pytest.mark.parametrize("field", [{"tools": [{"type": "function", "function": {"name": "f"}}]},
                                   {"logprobs": True}, {"response_format": {"type": "json_object"}},
                                   {"logit_bias": {"42": 100}}, {"tool_choice": "auto"}])
def test_fields_that_change_a_reply_are_refused_not_ignored(client: TestClient, field: dict) -> None:
    response = client.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}], **field})
    assert response.status_code == 400 and "not supported" in response.json()["error"]["message"]


def test_fields_that_ask_for_nothing_are_accepted(client: TestClient) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "logprobs": False, "tools": [],
            "response_format": {"type": "text"}, "logit_bias": {}, "user": "someone"}
    assert client.post(CHAT, json=body).status_code == 200


def test_a_long_chat_costs_its_size_in_the_rate_budget(client: TestClient) -> None:
    turns = [{"role": role, "content": "words " * 1333} for role in ("user", "assistant", "user", "assistant", "user")]
    first = client.post(CHAT, json={"messages": turns, "max_tokens": 3})  # 39,990 characters
    assert first.status_code == 413  # over the 32,000 allowed in all: refused before it costs anything
    big = turns[:4] + [{"role": "user", "content": "hi"}]  # 31,998 characters: 63 + 1 of the 120 a minute
    assert client.post(CHAT, json={"messages": big, "max_tokens": 3}).status_code == 200
    again = client.post(CHAT, json={"messages": big, "max_tokens": 3})
    assert again.status_code == 429 and "characters" in again.json()["error"]["message"]
    assert client.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 200
