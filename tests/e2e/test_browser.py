"""The sandbox's web page in headless Chromium: type in one region's pane, read in another's."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from .cdp import Browser, Page, chromium_path
from .harness import SandboxProcess, room_name

pytestmark = pytest.mark.browser

CHROMIUM = chromium_path()


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: install Debian's `chromium` package to run the browser test",
)
def test_message_typed_in_one_region_appears_in_another(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    room = room_name()
    text = "hello from the browser"
    browser = Browser(CHROMIUM, tmp_path / "profile")

    async def scenario() -> None:
        page = await Page.open(browser.page_ws_url())
        try:
            await page.send("Page.enable")
            await page.send("Page.navigate", url=sandbox.web)
            await page.wait_until("document.body && document.body.dataset.ready === 'true'")
            regions = await page.evaluate(
                "[...document.querySelectorAll('.pane .region')].map(s => s.value)"
            )
            assert regions == list(sandbox.endpoints["regions"])
            # Pane 0 (us-east-1) and pane 2 (ap-northeast-1) join the same room.
            for index, user in ((0, "alice"), (2, "carol")):
                await page.type_into(f"[data-testid=user-{index}]", user)
                await page.type_into(f"[data-testid=room-{index}]", room)
                await page.click(f"[data-testid=connect-{index}]")
            for index in (0, 2):
                await page.wait_until(
                    f"document.querySelector('[data-testid=pane-{index}]').dataset.joined"
                    f" === {json.dumps(room)}"
                )
            await page.type_into("[data-testid=text-0]", text)
            await page.press_enter()
            found = await page.wait_until(
                "[...document.querySelectorAll('[data-testid=messages-2] li.message')]"
                ".map(li => li.textContent).join('\\n')"
            )
            assert text in found and "alice@us-east-1" in found
            own = await page.wait_until(
                "[...document.querySelectorAll('[data-testid=messages-0] li.message')]"
                ".map(li => li.textContent).join('\\n')"
            )
            assert text in own
            # The pane that did not join shows nothing.
            assert (
                await page.evaluate(
                    "document.querySelectorAll('[data-testid=messages-1] li.message').length"
                )
                == 0
            )
            shot = Path(os.environ.get("SANDBOX_SCREENSHOT", tmp_path / "page.png"))
            await page.screenshot(shot)
        finally:
            await page.close()

    try:
        asyncio.run(scenario())
    finally:
        browser.close()
