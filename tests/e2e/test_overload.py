"""Clients under overload: a region that answers late is waited for, not failed over, and the
clients converge with nothing lost once the load drops (issue 16, item 4).

The app runs as synthesized, except that ClientMessageHandler is wrapped (in a copy of the
cloud assembly) so that while a flag file exists every ``join`` does its work and then fails,
as a join that ran past its function's timeout does under overload: API Gateway answers with
its ref-less "Internal server error" frame, the connection is a member already, and live
messages flow with no ``joined`` to say from where. ``ping`` and ``send`` are untouched, so
the region is slow, not dead. Each step waits for an event (every client reporting the slow
region, acks, every message shown), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.soak import SoakClient, SoakSession
from multiregion_chat.clients.endpoints import connect_url
from multiregion_chat.clients.options import Backoff, ClientOptions
from multiregion_chat.clients.websocket_client import run_websocket

from .cdp import Browser, Page, chromium_path
from .harness import Client, SandboxProcess, room_name, wait_until

CHROMIUM = chromium_path()

REGIONS = ("us-east-1", "eu-west-1")
CLIENTS_PER_REGION = 2
TALKER_MESSAGES = 5
WRAPPED_HANDLER = "multiregion_chat.runtime.handlers.client_message_handler.handler"
PROBE_ASSET = "asset.overload-probe"
SLOW_LINE = "no answer yet; ping answered: slow"

PROBE_CODE = '''"""Test-only (tests/e2e/test_overload.py): ClientMessageHandler; while the file
OVERLOAD_FLAG_FILE exists its joins fail after doing their work, like joins past their timeout."""
import json
import os

from multiregion_chat.runtime.handlers.client_message_handler import (
    handler as client_message_handler,
)


def handler(event, context):
    result = client_message_handler(event, context)
    if os.path.exists(os.environ["OVERLOAD_FLAG_FILE"]) and _action(event) == "join":
        raise TimeoutError("injected overload: the join ran past its time")
    return result


def _action(event):
    try:
        return json.loads(event.get("body") or "{}").get("action")
    except (ValueError, AttributeError):
        return None
'''


def overloadable_assembly(cdk_out: Path, overlay: Path, flag: Path) -> Path:
    """A copy of ``cdk_out`` (symlinks, but for the templates) whose ClientMessageHandler is
    wrapped by PROBE_CODE, reading ``flag``."""
    overlay.mkdir(parents=True)
    manifest = json.loads((cdk_out / "manifest.json").read_text())
    templates = {
        artifact["properties"]["templateFile"]
        for artifact in manifest["artifacts"].values()
        if artifact.get("type") == "aws:cloudformation:stack"
    }
    for entry in cdk_out.iterdir():
        if entry.name not in templates:
            (overlay / entry.name).symlink_to(entry.resolve())
    wrapped = 0
    for name in templates:
        template = json.loads((cdk_out / name).read_text())
        for resource in template["Resources"].values():
            properties = resource.get("Properties", {})
            if properties.get("Handler") != WRAPPED_HANDLER:
                continue
            asset = cdk_out / resource["Metadata"]["aws:asset:path"]
            if not (overlay / PROBE_ASSET).exists():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(asset, overlay / PROBE_ASSET, ignore=ignore)
                (overlay / PROBE_ASSET / "overload_probe.py").write_text(PROBE_CODE)
            resource["Metadata"]["aws:asset:path"] = PROBE_ASSET
            properties["Handler"] = "overload_probe.handler"
            variables = properties.setdefault("Environment", {}).setdefault("Variables", {})
            variables["OVERLOAD_FLAG_FILE"] = str(flag)
            wrapped += 1
        (overlay / name).write_text(json.dumps(template))
    assert wrapped == len(templates), "every regional stack has a ClientMessageHandler"
    return overlay


@pytest.fixture(scope="module")
def overload(
    cdk_out: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SandboxProcess, Path]]:
    workdir = tmp_path_factory.mktemp("overload")
    flag = workdir / "overloaded"
    assembly = overloadable_assembly(cdk_out, workdir / "cdk.out", flag)
    process = SandboxProcess(assembly, workdir / "sandbox", regions=REGIONS).start()
    try:
        yield process, flag
    finally:
        status = process.stop()
        assert status == 0, f"the sandbox exited {status}:\n{process.stderr()[-4000:]}"


def _options() -> ClientOptions:
    # A join's failure is seen after reply_seconds (API Gateway's error frame has no ref); a
    # ping then shows the region alive. Generous bounds: a loaded machine is slow, not wrong.
    return ClientOptions(
        reply_seconds=5.0,
        alive_seconds=60.0,
        rejoin=Backoff(attempts=100, base=0.2, cap=2.0),
        backoff=Backoff(attempts=3, base=0.2, cap=1.0),
        ready_seconds=600.0,
        drain_seconds=5.0,
    )


def test_clients_wait_out_a_slow_region_and_converge_with_nothing_lost(
    overload: tuple[SandboxProcess, Path],
) -> None:
    sandbox, flag = overload
    room = room_name()

    async def scenario() -> tuple[list[SoakClient], list[str]]:
        talker = await Client.open(sandbox.url(REGIONS[0]), "talker")
        await talker.join(room)  # before the overload: it sends while the others cannot join
        flag.touch()
        clients = _start_clients(sandbox, room)
        try:
            await wait_until(
                lambda: all(_said(c, SLOW_LINE) for c in clients),
                timeout=120,
                what="every client found its region slow (join unanswered, ping answered)",
            )
            assert not any(c.session.ready.is_set() for c in clients)
            sent = []
            for n in range(TALKER_MESSAGES):
                body = {"action": "send", "room": room, "body": f"talker#{n}"}
                ack = await talker.request(body, timeout=60)
                assert ack["type"] == "ack", ack
                sent.append(str(ack["id"]))
            for client in clients:  # typed while overloaded: sent once joined
                client.lines.put_nowait(f"{client.user}#0\n")
                client.lines_sent += 1
            flag.unlink()  # the load drops

            def everyone() -> set[str]:
                return set(sent) | {m for c in clients for m in c.session.acked.values()}

            await wait_until(
                lambda: (
                    all(len(c.session.acked) == c.lines_sent for c in clients)
                    and all(everyone() <= {m for m, _ in c.session.shown} for c in clients)
                ),
                timeout=120,
                what="every client acked its line and shows every message",
            )
            expected = everyone()
        finally:
            flag.unlink(missing_ok=True)
            for client in clients:
                client.lines.put_nowait(None)
            await asyncio.gather(*(c.task for c in clients if c.task), return_exceptions=True)
            await talker.close()
        return clients, sorted(expected)

    clients, expected = asyncio.run(scenario())
    assert len(expected) == TALKER_MESSAGES + len(clients)
    for client in clients:
        output = "\n".join(client.session.sink.lines)
        shown = Counter(message_id for message_id, _ in client.session.shown)
        assert sorted(shown) == expected, f"{client.user}: each message once:\n{output}"
        assert all(count == 1 for count in shown.values()), output
        # Slow, not dead: the first connection carried it through; no reconnect, no failover.
        assert "* reconnected to" not in output and "failing over" not in output, output
        assert "nor to ping" not in output, output
        assert client.task is not None and client.task.result() == 0


def _start_clients(sandbox: SandboxProcess, room: str) -> list[SoakClient]:
    secret = sandbox.signing_secret
    clients = []
    for number in range(CLIENTS_PER_REGION * len(REGIONS)):
        region = REGIONS[number % len(REGIONS)]
        user = f"slow-{region}-{number}"
        order = [region, *(r for r in REGIONS if r != region)]  # home first, then failover
        urls = [connect_url(sandbox.url(r), user, None, secret=secret) for r in order]
        client = SoakClient(user, region, room, SoakSession(room, _options()), sandbox.url(region))
        client.task = asyncio.create_task(run_websocket(client.session, urls, client.input()))
        clients.append(client)
    return clients


def _said(client: SoakClient, text: str) -> bool:
    return any(text in line for line in client.session.sink.lines)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: install Debian's `chromium` package")
def test_the_web_page_waits_out_a_slow_region_and_resumes_a_quiet_room(
    overload: tuple[SandboxProcess, Path], tmp_path: Path
) -> None:
    """The page's pane, as the CLI: a join unanswered while ping is answered is asked again on
    the same connection (no reconnect, no failover), and everything sent meanwhile is shown
    once. Then the two resume gaps: a pane that saw no message in its room resumes from when
    it joined, and the messages sent while it was away are shown."""
    assert CHROMIUM is not None
    sandbox, flag = overload
    busy, quiet = room_name(), room_name()
    browser = Browser(CHROMIUM, tmp_path / "profile")
    pane = "document.querySelector('[data-testid=pane-{}]').dataset"
    ids_js = (
        "[...document.querySelectorAll('[data-testid=messages-{}] li.message')]"
        ".map(li => li.dataset.id)"
    )

    async def send_all(talker: Client, room: str, count: int) -> list[str]:
        sent = []
        for n in range(count):
            ack = await talker.request({"action": "send", "room": room, "body": f"m{n}"})
            assert ack["type"] == "ack", ack
            sent.append(str(ack["id"]))
        return sent

    async def scenario() -> None:
        page = await Page.open(browser.page_ws_url())
        talker = await Client.open(sandbox.url(REGIONS[0]), "talker")
        try:
            await talker.join(busy)
            await talker.join(quiet)
            await page.send("Page.enable")
            await page.send("Page.navigate", url=f"{sandbox.web}?reply=2&rejoin=0.2&backoff=0.5")
            await page.wait_until("document.body && document.body.dataset.ready === 'true'")
            # Pane 1 joins the quiet room before the overload, and sees no message there.
            await page.type_into("[data-testid=room-1]", quiet)
            await page.click("[data-testid=connect-1]")
            await page.wait_until(f"{pane.format(1)}.synced === {json.dumps(quiet)}")
            # Overloaded: pane 0's join does its work and fails; pings are answered.
            flag.touch()
            await page.type_into("[data-testid=room-0]", busy)
            await page.click("[data-testid=connect-0]")
            await page.wait_until(f"Number({pane.format(0)}.slow || 0) >= 1", timeout=120)
            sent = await send_all(talker, busy, 3)
            flag.unlink()
            await page.wait_until(f"{pane.format(0)}.synced === {json.dumps(busy)}", timeout=120)
            await page.wait_until(
                f"{json.dumps(sent)}.every(id => {ids_js.format(0)}.includes(id))"
            )
            assert await page.evaluate(ids_js.format(0)) == sent  # each once, in order
            assert await page.evaluate(f"{pane.format(0)}.reconnects || '0'") == "0"
            assert await page.evaluate(f"{pane.format(0)}.failovers || '0'") == "0"
            # A live message during a catch-up does not move the resume point; it does once
            # the catch-up is complete (here: an id far in the future, shown only to pane 0).
            future_id = "7ZZZZZZZZZ" + "0" * 16
            held = await page.evaluate(
                "(() => { const pane = state.paneList[0]; const room = "
                f"{json.dumps(busy)}; const before = pane.lastIds[room];"
                " pane.syncing.add(room);"
                f" pane.showMessage({{id: {json.dumps(future_id)}, room, body: 'x'}}, true);"
                " return [pane.lastIds[room] === before, pane.liveNewest[room]]; })()"
            )
            assert held == [True, future_id]
            # Pane 1 goes away (no reconnect scheduled yet); messages are sent meanwhile.
            await page.evaluate("state.paneList[1].closeSocket(), true")
            missed = await send_all(talker, quiet, 2)
            await page.evaluate("state.paneList[1].open(), true")
            await page.wait_until(
                f"{json.dumps(missed)}.every(id => {ids_js.format(1)}.includes(id))", timeout=60
            )
            assert await page.evaluate(ids_js.format(1)) == missed
        finally:
            flag.unlink(missing_ok=True)
            await talker.close()
            await page.close()

    try:
        asyncio.run(scenario())
    finally:
        browser.close()
