"""The web page in headless Chromium (Debian's chromium driven by Playwright): chat streams,
memories show and can be deleted, thumbs and privacy settings reach the API."""

from __future__ import annotations

import shutil

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


def test_page_chats_remembers_and_forgets(server: str) -> None:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server)
        page.fill("#input", "My name is Ana and I love green tea.")
        page.keyboard.press("Enter")
        reply = page.locator("#log li.assistant").first
        playwright.expect(reply).to_contain_text("You said: My name is Ana and I love green tea.")
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
