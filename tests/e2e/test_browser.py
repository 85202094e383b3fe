"""The sandbox's web page in headless Chromium: type in one region's pane, read in another's;
presence lists across regions; a pane that loses its connection resumes."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from multiregion_chat.clients.resume import resume_after

from .cdp import Browser, Page, chromium_path
from .harness import Client, SandboxProcess, drop_connection, room_name, sandbox_get

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
            # Short timers: first reconnect after 1-2 s, a ping every second.
            await page.send("Page.navigate", url=f"{sandbox.web}?backoff=2&ping=1")
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
            # Presence: each pane lists the user who joined in the other region.
            for index, user, region in ((2, "alice", "us-east-1"), (0, "carol", "ap-northeast-1")):
                shown = await page.wait_until(
                    f"document.querySelector('[data-testid=presence-{index}] "
                    f"li[data-user={user}]')?.textContent"
                )
                assert shown == f"{user}@{region}"
            # The page's port of resume_after agrees with the one implementation.
            for message_id in ("01M80BAD5QET6J63GD4WN9REGA", "00000000050000000000000000"):
                ported = await page.evaluate(f"resumeAfter({json.dumps(message_id)}, 5000)")
                assert ported == resume_after(message_id, 5000), message_id
            # Pane 2's connection vanishes; messages are sent meanwhile; it reconnects and
            # shows each once, in id order.
            pings = await _pings(sandbox, "ap-northeast-1")
            talker = await Client.open(sandbox.url("eu-west-1"), "talker")
            try:
                await talker.join(room)
                await drop_connection(sandbox, "ap-northeast-1", "carol")
                sent = []
                for n in range(3):
                    ack = await talker.request({"action": "send", "room": room, "body": f"gap {n}"})
                    sent.append(ack["id"])
            finally:
                await talker.close()
            pane2 = "document.querySelector('[data-testid=pane-2]')"
            await page.wait_until(f"{pane2}.dataset.reconnects === '1'")
            await page.wait_until(f"{pane2}.dataset.synced === {json.dumps(room)}")
            ids_js = (
                "[...document.querySelectorAll('[data-testid=messages-2] li.message')]"
                ".map(li => li.dataset.id)"
            )
            await page.wait_until(f"{json.dumps(sent)}.every(id => {ids_js}.includes(id))")
            ids = await page.evaluate(ids_js)
            assert ids == sorted(ids) and len(ids) == len(set(ids)) == 4, ids
            assert ids[1:] == sorted(sent)
            # A burst typed faster than acks come back (one tick): numbered sends, shown in
            # send order in the other region's pane.
            burst = [f"burst {n}" for n in range(10)]
            await page.evaluate(
                "(() => { const pane = state.paneList[0];"
                f" for (const text of {json.dumps(burst)}) {{"
                " pane.q('.text').value = text; pane.sendText(); } return true; })()"
            )
            bodies_js = (
                "[...document.querySelectorAll('[data-testid=messages-2] li.message .body')]"
                ".map(li => li.textContent)"
            )
            await page.wait_until(f"{bodies_js}.filter(b => b.startsWith('burst')).length === 10")
            shown_bodies = await page.evaluate(bodies_js)
            assert [b for b in shown_bodies if b.startswith("burst")] == burst
            assert await page.wait_until("state.paneList[0].outgoing.size === 0")  # all acked
            # The panes ping on their timer.
            deadline = asyncio.get_running_loop().time() + 15
            while await _pings(sandbox, "ap-northeast-1") <= pings:
                assert asyncio.get_running_loop().time() < deadline, "the page did not ping"
                await asyncio.sleep(0.1)
            shot = Path(os.environ.get("SANDBOX_SCREENSHOT", tmp_path / "page.png"))
            await page.screenshot(shot)
        finally:
            await page.close()

    try:
        asyncio.run(scenario())
    finally:
        browser.close()


async def _pings(sandbox: SandboxProcess, region: str) -> int:
    stats = await sandbox_get(sandbox, "_sandbox/stats")
    return int(stats["regions"][region]["websocket"].get("route:ping", 0))
