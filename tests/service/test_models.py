"""Several models side by side: /v1/models lists them with the champion marked, a request's `model`
picks the one that answers (the champion when it names none), an unknown one is a 404 that lists
them; which bundles a folder holds; the reply's room on a small context."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bitzero.export.promotion import STUDENT, Decision, write_champion
from bitzero.service.app import create_app
from bitzero.service.model import ModelError, ModelSet, Served, bundle_folders
from bitzero.service.settings import Settings
from tests.service.conftest import FakeModel

CHAT = "/v1/chat/completions"


@pytest.fixture
def pair() -> tuple[FakeModel, FakeModel]:
    return FakeModel(model_id="bitzero-1111aaaa"), FakeModel(context_length=512, model_id="bitzero-2222bbbb")


@pytest.fixture
def two(settings: Settings, pair: tuple[FakeModel, FakeModel], embedder) -> Iterator[TestClient]:
    student, teacher = pair
    models = ModelSet([Served("bitzero-teacher-int4", teacher, kind="teacher", variant="int4"),
                       Served("bitzero-student-nbits", student, champion=True, kind="student", variant="nbits")])
    with TestClient(create_app(settings, models=models, embedder=embedder)) as client:
        yield client


def test_models_lists_every_model_champion_first(two: TestClient) -> None:
    listed = two.get("/v1/models").json()
    assert listed["object"] == "list"
    assert [{k: m[k] for k in ("id", "object", "owned_by", "champion", "kind", "variant", "context_length",
                               "bundle_id")} for m in listed["data"]] == [
        {"id": "bitzero-student-nbits", "object": "model", "owned_by": "bitzero", "champion": True, "kind": "student",
         "variant": "nbits", "context_length": 2048, "bundle_id": "bitzero-1111aaaa"},
        {"id": "bitzero-teacher-int4", "object": "model", "owned_by": "bitzero", "champion": False, "kind": "teacher",
         "variant": "int4", "context_length": 512, "bundle_id": "bitzero-2222bbbb"},
    ]
    assert all(isinstance(m["created"], int) for m in listed["data"])


def test_the_request_picks_the_model_that_answers(two: TestClient, pair: tuple[FakeModel, FakeModel]) -> None:
    student, teacher = pair
    said = two.post(CHAT, json={"messages": [{"role": "user", "content": "to the champion"}]}).json()
    assert said["model"] == "bitzero-student-nbits" and student.prompts and not teacher.prompts
    picked = two.post(CHAT, json={"model": "bitzero-teacher-int4",
                                  "messages": [{"role": "user", "content": "to the teacher"}]}).json()
    assert picked["model"] == "bitzero-teacher-int4" and "to the teacher" in teacher.prompts[-1]
    by_bundle = two.post(CHAT, json={"model": "bitzero-2222bbbb", "messages": [{"role": "user", "content": "x"}]})
    assert by_bundle.json()["model"] == "bitzero-teacher-int4" and len(teacher.prompts) == 2
    with two.stream("POST", CHAT, json={"model": "bitzero-teacher-int4", "stream": True,
                                        "messages": [{"role": "user", "content": "streamed"}]}) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert {c["model"] for c in chunks} == {"bitzero-teacher-int4"} and len(student.prompts) == 1


def test_an_unknown_model_is_a_404_listing_the_models(two: TestClient, pair: tuple[FakeModel, FakeModel]) -> None:
    response = two.post(CHAT, json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == ("model 'gpt-4o' is not served here; available: bitzero-student-nbits, "
                                "bitzero-teacher-int4 (GET /v1/models)")
    assert not pair[0].prompts and not pair[1].prompts


def test_the_default_reply_leaves_room_on_a_small_context(settings: Settings, embedder) -> None:
    """The first message of the old page failed: 128 tokens asked of a 128-token context."""
    small = FakeModel(context_length=128)
    with TestClient(create_app(settings, model=small, embedder=embedder)) as client:
        reply = client.post(CHAT, json={"messages": [{"role": "user", "content": "hello"}]})
        assert reply.status_code == 200, reply.text
        assert small.max_tokens[-1] == 128 - reply.json()["usage"]["prompt_tokens"] >= 64
        refused = client.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 128})
        assert refused.status_code == 400 and "fewer than 128" in refused.json()["error"]["message"]


def _bundle(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "bitzero.json").write_text("{}")
    return folder


def test_which_bundles_a_folder_holds(tmp_path: Path) -> None:
    single = _bundle(tmp_path / "one")
    assert bundle_folders(single) == ([single], single)
    root = tmp_path / "bundles"
    student, teacher = _bundle(root / "student"), _bundle(root / "teacher")
    with pytest.raises(ModelError, match="no champion.json"):
        bundle_folders(root)
    write_champion(root, Decision(STUDENT, "test", 1.0, 1.0, 1.1), {"student": "s", "teacher": "t"})
    assert bundle_folders(root) == ([student, teacher], student)
    with pytest.raises(ModelError, match="no exported bundle"):
        bundle_folders(tmp_path / "missing")
