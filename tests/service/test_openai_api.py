"""The OpenAI-compatible API, through the official openai client against a real uvicorn server."""

from __future__ import annotations

import httpx
import openai
import pytest


def test_openai_client_streams_a_reply(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused-on-loopback", max_retries=0)
    stream = client.chat.completions.create(
        model="bitzero-fake", messages=[{"role": "user", "content": "hello there friend"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "You said: hello there friend"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_client_plain_completion_models_and_errors(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused-on-loopback", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["bitzero-fake"]
    reply = client.chat.completions.create(
        model="bitzero-fake", messages=[{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "one two three four"}],
        max_tokens=200, stop=["four"], temperature=0.2, top_p=0.9,
    )
    assert reply.choices[0].message.content == "You said: one two three "
    assert reply.usage.prompt_tokens > 0 and reply.usage.total_tokens > reply.usage.prompt_tokens
    short = client.chat.completions.create(model="bitzero-fake", messages=[{"role": "user", "content": "a b c d e f"}],
                                           max_tokens=3)
    assert short.choices[0].finish_reason == "length"
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="bitzero-fake", messages=[{"role": "user", "content": "x"}],
                                       temperature=5)
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])


def test_raw_sse_format(server: str) -> None:
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=30,
                      json={"messages": [{"role": "user", "content": "hi"}], "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_a_failure_mid_stream_reaches_the_client_as_an_error(server: str, model) -> None:
    def broken(*_: object, **__: object):
        yield from ()
        raise RuntimeError("boom")

    model.stream = broken
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused-on-loopback", max_retries=0)
    with pytest.raises(openai.APIError, match="failed while generating"):
        list(client.chat.completions.create(model="bitzero-fake", messages=[{"role": "user", "content": "hi"}],
                                            stream=True))
    del model.stream  # the model works again
    assert client.chat.completions.create(  # bad seeds are refused before anything is generated
        model="bitzero-fake", messages=[{"role": "user", "content": "hi"}], seed=1).choices
    with pytest.raises(openai.BadRequestError, match="seed"):
        client.chat.completions.create(model="bitzero-fake", messages=[{"role": "user", "content": "hi"}], seed=-1)


def test_replies_validate_against_the_openai_types_and_the_openapi_contract(server: str) -> None:
    from openai.types import Model
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openapi_spec_validator import validate

    body = {"messages": [{"role": "user", "content": "hello there"}]}
    plain = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=30).json()
    assert ChatCompletion.model_validate(plain).choices[0].message.content == "You said: hello there"
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=30,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as response:
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(e) for e in events[:-1]]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: hello there"
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    for card in httpx.get(f"{server}/v1/models", timeout=30).json()["data"]:
        Model.model_validate(card)

    document = httpx.get(f"{server}/openapi.json", timeout=30).json()
    validate(document)  # a valid OpenAPI 3.1 document
    schemes = document["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert chat["security"] and chat["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletion"}
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if status.startswith("2") and status != "204" and path != "/metrics":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema and schema != {}, f"{method.upper()} {path} {status} declares no response schema"


def test_the_model_is_told_its_earlier_replies_and_the_message_not_to_repeat(client, model) -> None:
    messages = [{"role": "user", "content": "my dog died"}, {"role": "assistant", "content": "I am so sorry."},
                {"role": "user", "content": "plan my evening"}]
    assert client.post("/v1/chat/completions", json={"messages": messages}).status_code == 200
    assert model.earlier[-1] == model.tokenizer.decode(model.tokenizer.encode("I am so sorry.") +
                                                       model.tokenizer.encode("plan my evening"))
    assert client.post("/v1/chat/completions", json={"messages": messages[:1]}).status_code == 200
    assert model.earlier[-1] == "my dog died"  # an earlier user message is free to be quoted
