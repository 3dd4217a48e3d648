"""The web page in headless Chromium (Debian's chromium driven by Playwright): the first message
streams a reply with the model that answered, the picker chooses the model, a failure mid-stream
shows its message, memories show and can be deleted, thumbs and privacy settings reach the API."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bitzero.service.app import create_app
from bitzero.service.model import ModelSet, Served
from bitzero.service.settings import Settings
from tests.service.conftest import FakeModel, serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(tempfile.gettempdir()) / "bitzero-page-screenshots"  # to look at; nothing reads them back
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


@pytest.fixture
def teacher() -> FakeModel:
    return FakeModel(model_id="bitzero-2222bbbb")


@pytest.fixture
def two_models(settings: Settings, model: FakeModel, teacher: FakeModel, embedder) -> Iterator[str]:
    """The champion (a student) and a teacher, as the export stage's two bundles are served."""
    models = ModelSet([Served("bitzero-student-nbits", model, champion=True),
                       Served("bitzero-teacher-int4", teacher)])
    with serving(create_app(settings, models=models, embedder=embedder)) as url:
        yield url


def test_page_picks_models_and_shows_stream_errors(two_models: str, model: FakeModel, teacher: FakeModel) -> None:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(two_models)
        picker = page.locator("#model")
        playwright.expect(picker.locator("option")).to_have_text(["bitzero-student-nbits (champion)",
                                                                 "bitzero-teacher-int4"])
        playwright.expect(picker).to_have_value("bitzero-student-nbits")
        page.fill("#input", "hello there")
        page.keyboard.press("Enter")
        first = page.locator("#log li.assistant").nth(0)
        playwright.expect(first.locator(".text")).to_have_text("You said: hello there")
        playwright.expect(first.locator(".model")).to_have_text("bitzero-student-nbits")

        picker.select_option("bitzero-teacher-int4")
        page.fill("#input", "and now you")
        page.keyboard.press("Enter")
        second = page.locator("#log li.assistant").nth(1)
        playwright.expect(second.locator(".text")).to_have_text("You said: and now you")
        playwright.expect(second.locator(".model")).to_have_text("bitzero-teacher-int4")
        assert len(model.prompts) == 1 and "and now you" in teacher.prompts[-1]

        def broken(*_: object, **__: object) -> Iterator[object]:
            yield from ()
            raise RuntimeError("boom")

        teacher.stream = broken
        page.fill("#input", "this one fails")
        page.keyboard.press("Enter")
        playwright.expect(page.locator("#status")).to_have_text("the model failed while generating this reply")
        playwright.expect(page.locator("#log li.assistant")).to_have_count(2)
        assert errors == []
        browser.close()


def test_page_chats_remembers_and_forgets(server: str) -> None:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server)
        page.fill("#input", "My name is Ana and I love green tea.")
        page.keyboard.press("Enter")
        reply = page.locator("#log li.assistant").first
        playwright.expect(reply).to_contain_text("You said: My name is Ana and I love green tea.")
        playwright.expect(reply.locator(".model")).to_have_text("bitzero-fake")
        memories = page.locator("#memories li span")
        playwright.expect(memories).to_have_count(2)
        playwright.expect(memories.first).to_have_text("The user's name is Ana.")

        reply.locator("button[title='Good reply']").click()
        playwright.expect(page.locator("#status")).to_have_text("Thanks for the feedback.")
        assert httpx.get(f"{server}/v1/export").json()["feedback"][0]["score"] == 1

        page.locator("#memories li", has_text="green tea").locator("button.forget").click()
        playwright.expect(memories).to_have_count(1)
        assert [m["content"] for m in httpx.get(f"{server}/v1/memories").json()["data"]] == ["The user's name is Ana."]

        page.check("#privacy input[name=remember_emotions]")
        page.fill("#privacy input[name=retention_days]", "30")
        page.click("#privacy button[type=submit]")
        playwright.expect(page.locator("#status")).to_have_text("Settings saved.")
        settings = httpx.get(f"{server}/v1/privacy").json()
        assert settings["remember_emotions"] is True and settings["retention_days"] == 30

        page.on("dialog", lambda dialog: dialog.accept())
        page.click("#erase")
        playwright.expect(page.locator("#status")).to_have_text("Everything about you was erased.")
        assert httpx.get(f"{server}/v1/memories").json()["data"] == []
        browser.close()


def test_page_lists_restores_resumes_and_deletes_conversations(server: str) -> None:
    """Conversations people come back to: listed with titles, restored after a reload, resumed where
    they were (the next message joins the same stored conversation), deleted from the list."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(server)
        log = page.locator("#log li.assistant .text")
        for text in ("Tell me about tea.", "And green tea?"):
            page.fill("#input", text)
            page.keyboard.press("Enter")
            playwright.expect(log.last).to_have_text(f"You said: {text}")
        page.click("#new-chat")
        page.fill("#input", "Plans for the weekend")
        page.keyboard.press("Enter")
        playwright.expect(log.last).to_have_text("You said: Plans for the weekend")
        titles = page.locator("#conversations li button.title")
        playwright.expect(titles).to_have_text(["Plans for the weekend", "Tell me about tea."])

        page.reload()  # the open conversation comes back with its history
        playwright.expect(page.locator("#log li.user .text")).to_have_text(["Plans for the weekend"])
        playwright.expect(page.locator("#conversations li.open button.title")).to_have_text("Plans for the weekend")

        titles.filter(has_text="Tell me about tea.").click()
        playwright.expect(page.locator("#log li.user .text")).to_have_text(["Tell me about tea.", "And green tea?"])
        page.fill("#input", "Which one is best?")
        page.keyboard.press("Enter")
        playwright.expect(log.last).to_have_text("You said: Which one is best?")
        stored = httpx.get(f"{server}/v1/conversations").json()["data"]
        assert [(c["title"], c["message_count"]) for c in stored] == [("Tell me about tea.", 6),  # resumed: on top
                                                                       ("Plans for the weekend", 2)]

        page.locator("#conversations li", has_text="Plans for the weekend").locator("button.forget").click()
        playwright.expect(titles).to_have_text(["Tell me about tea."])
        assert [c["title"] for c in httpx.get(f"{server}/v1/conversations").json()["data"]] == ["Tell me about tea."]
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "conversations.png"), full_page=True)
        assert errors == []
        browser.close()
