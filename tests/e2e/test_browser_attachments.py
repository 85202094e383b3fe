"""The web page's attachments in headless Chromium: an image attached in one region's pane is
previewed in another region's pane from that region's own copy, with the same bytes; a text
too large to send is offered, and sent, as a file (docs/protocol.md, "Attachments")."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from pathlib import Path

import pytest
import requests

from .cdp import Browser, Page, chromium_path
from .harness import SandboxProcess, room_name

pytestmark = pytest.mark.browser

CHROMIUM = chromium_path()
PANES = {0: "alice", 2: "carol"}  # us-east-1 and ap-northeast-1


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG of one colour (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x20\x80\xc0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _items(index: int) -> str:
    return f"[...document.querySelectorAll('[data-testid=messages-{index}] li.message')]"


async def _join(page: Page, room: str) -> None:
    for index, user in PANES.items():
        await page.type_into(f"[data-testid=user-{index}]", user)
        await page.type_into(f"[data-testid=room-{index}]", room)
        await page.click(f"[data-testid=connect-{index}]")
    for index in PANES:
        await page.wait_until(
            f"document.querySelector('[data-testid=pane-{index}]').dataset.joined"
            f" === {json.dumps(room)}"
        )


async def _choose_file(page: Page, selector: str, path: Path) -> None:
    """Pick ``path`` in a file input, as the file chooser would (input and change events)."""
    document = await page.send("DOM.getDocument")
    node = await page.send(
        "DOM.querySelector", nodeId=document["root"]["nodeId"], selector=selector
    )
    await page.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node["nodeId"])


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: install Debian's `chromium` package to run the browser test",
)
def test_an_image_attached_in_one_region_is_previewed_in_another(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    room = room_name()
    image = tmp_path / "dot <b>.png"  # a name that would be markup if rendered as HTML
    image.write_bytes(png(7, 5))
    browser = Browser(CHROMIUM, tmp_path / "profile")

    async def scenario() -> None:
        page = await Page.open(browser.page_ws_url())
        try:
            await page.send("Page.enable")
            await page.send("Page.navigate", url=sandbox.web)
            await page.wait_until("document.body && document.body.dataset.ready === 'true'")
            await _join(page, room)
            await _choose_file(page, "[data-testid=file-0]", image)
            preview = f"{_items(2)}.map(li => li.querySelector('img.preview')).find(i => i)"
            width = await page.wait_until(
                f"(() => {{ const i = {preview}; return i && i.complete && i.naturalWidth; }})()",
                timeout=60,
            )
            assert width == 7
            src, region = await page.evaluate(f"[{preview}.src, {preview}.dataset.region]")
            assert region == "ap-northeast-1"  # the reader's own copy, not the origin's
            got = await asyncio.to_thread(requests.get, src, timeout=30)
            assert got.status_code == 200 and got.content == image.read_bytes()
            assert "inline" in got.headers.get("Content-Disposition", "")
            # The name is text, not markup: no <b> element appeared.
            texts = await page.evaluate(f"{_items(2)}.map(li => li.textContent).join('\\n')")
            assert "dot <b>.png" in texts
            assert await page.evaluate(f"{_items(2)}.some(li => li.querySelector('b'))") is False
            # The uploader's own pane shows it too.
            await page.wait_until(f"{_items(0)}.some(li => li.querySelector('.attachment'))")
        finally:
            await page.close()

    try:
        asyncio.run(scenario())
    finally:
        browser.close()


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: install Debian's `chromium` package to run the browser test",
)
def test_a_text_too_large_to_send_is_sent_as_a_file_on_request(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    room = room_name()
    text = "long " * 4000  # 20,000 bytes: over maxBodyBytes (16,384)
    browser = Browser(CHROMIUM, tmp_path / "profile")

    async def scenario() -> None:
        page = await Page.open(browser.page_ws_url())
        try:
            await page.send("Page.enable")
            await page.send("Page.navigate", url=sandbox.web)
            await page.wait_until("document.body && document.body.dataset.ready === 'true'")
            await _join(page, room)
            await page.evaluate(
                "(() => { const pane = state.paneList[0];"
                f" pane.q('.text').value = {json.dumps(text)}; pane.sendText(); return true; }})()"
            )
            await page.wait_until(
                "document.querySelector('[data-testid=as-attachment-0]') !== null"
            )
            await page.click("[data-testid=as-attachment-0]")
            link = f"{_items(2)}.map(li => li.querySelector('a.download')).find(a => a)"
            shown = await page.wait_until(f"{link}?.textContent", timeout=60)
            assert shown == f"download message.txt ({len(text)} bytes)"
            # The link asks the pane's region for a URL when clicked; the file is the text.
            key = await page.evaluate(f"{link}.parentElement.dataset.key")
            url = await page.evaluate(
                f"state.paneList[2].request({{action: 'download', room: {json.dumps(room)},"
                f" key: {json.dumps(key)}}}).then(a => a.url)"
            )
            got = await asyncio.to_thread(requests.get, url, timeout=30)
            assert got.status_code == 200 and got.text == text
            assert await page.evaluate(f"{_items(2)}.some(li => li.querySelector('img'))") is False
        finally:
            await page.close()

    try:
        asyncio.run(scenario())
    finally:
        browser.close()
