"""The HTTP fallback client: a line is a ``POST``; each room is read with long-poll ``GET``s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, quote

import aiohttp

from multiregion_chat.clients.commands import HELP, Command, parse_command
from multiregion_chat.clients.options import HISTORY_PAGE, MAX_CATCH_UP_PAGES, ClientOptions
from multiregion_chat.clients.render import render
from multiregion_chat.clients.resume import id_timestamp_ms, resume_after, resume_from_now
from multiregion_chat.clients.session import ChatSession, Message, drain, until
from multiregion_chat.clients.strict_json import loads_frame

LOOK_BACK_MARGIN_MS = 1000  # HTTP: keep looking back this long beyond the resume window
LOOK_BACK_POLL_SECONDS = 1.0  # HTTP: long-poll slice while looking back


class HttpError(Exception):
    """A request to the HTTP API that was not answered as expected (status and document)."""

    def __init__(self, status: int, document: Any) -> None:
        self.status = status
        self.document = document
        if isinstance(document, dict) and "code" in document:
            text = f"{document.get('code')}: {document.get('message')}"
        else:
            text = json.dumps(document)[:200]
        super().__init__(f"HTTP {status} {text}")


def retry_after_seconds(document: Any) -> float:
    """The wait a 429 asks for (``retryAfterMs``), at least 1 s and at most 30 s."""
    hint = document.get("retryAfterMs") if isinstance(document, dict) else None
    if isinstance(hint, bool) or not isinstance(hint, int | float):
        return 1.0
    return min(30.0, max(1.0, hint / 1000))


class HttpChat:
    """The same client over the HTTP fallback: POST to send, long-poll GET per room."""

    def __init__(self, session: ChatSession, urls: list[str], http: aiohttp.ClientSession) -> None:
        self.session = session
        self.http = http
        self.bases: list[str] = []
        self.identity: dict[str, str] = {}
        self.headers: dict[str, str] = {}
        for url in urls:
            base, _, query = url.partition("?")
            self.bases.append(base.rstrip("/"))
            self.identity = dict(parse_qsl(query))
        token = self.identity.pop("token", None)
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        self.index = 0
        self.pollers: dict[str, asyncio.Task[None]] = {}
        self.gave_up = asyncio.Event()
        self.started_ms = int(time.time() * 1000)
        # Numbered posts (docs/protocol.md): this run's client id and the next seq.
        self.client_id = f"cli-{secrets.token_hex(8)}"
        self.next_seq = 1

    @property
    def options(self) -> ClientOptions:
        return self.session.options

    def _url(self, room: str) -> str:
        return f"{self.bases[self.index]}/rooms/{quote(room, safe='')}/messages"

    async def _call(
        self,
        method: str,
        room: str,
        params: dict[str, str],
        timeout: float,
        body: Any = None,
    ) -> tuple[int, Any]:
        async with self.http.request(
            method,
            self._url(room),
            params=params,
            json=body,
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as answer:
            try:
                document = await answer.json(content_type=None, loads=loads_frame)
            except ValueError:
                document = await answer.text()
            return answer.status, document

    async def post(self, room: str, text: str) -> None:
        """POST one line, numbered (``clientId`` + ``seq``): retried as is until it is final,
        so a retry is never a second message and the lines keep their order."""
        seq = self.next_seq
        self.next_seq += 1
        body = {"body": text, "clientId": self.client_id, "seq": seq}
        for attempt in range(1, self.options.backoff.attempts + 2):
            try:
                status, document = await self._call(
                    "POST", room, self.identity, self.options.reply_seconds, body=body
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.session.emit(f"! not sent yet: {exc or type(exc).__name__}")
                self._next_base()
                status, document = 0, None
            if status == 202 and isinstance(document, dict) and isinstance(document.get("id"), str):
                self._posted(document["id"])
                return
            if status not in (0, 409, 500, 502, 503, 504, 429):
                self.session.emit(f"! {HttpError(status, document)}")
                return
            await self.options.sleep(self.options.backoff.delay(attempt))
        self.session.emit(f"! not sent (seq {seq}): {text}")
        # Whether the server has it is unknown: the next line starts a new sequence rather than
        # wait behind this seq (sequence_gap) forever.
        self.client_id, self.next_seq = f"cli-{secrets.token_hex(8)}", 1

    def _posted(self, message_id: str) -> None:
        if message_id not in self.session.seen:
            self.session.unechoed.add(message_id)
        if self.options.verbose:
            self.session.emit(f"  (sent {message_id})")

    async def read(self, room: str, after: str | None, wait: float = 0.0) -> list[Message]:
        """Messages after ``after`` (all pages, bounded); long-polls ``wait`` s for the first."""
        collected: list[Message] = []
        for _ in range(MAX_CATCH_UP_PAGES):
            params = {"limit": str(HISTORY_PAGE), "wait": f"{wait:g}"}
            if after:
                params["after"] = after
            status, document = await self._call(
                "GET", room, params, wait + self.options.reply_seconds
            )
            if status != 200 or not isinstance(document, dict):
                raise HttpError(status, document)
            messages = [m for m in document.get("messages") or [] if isinstance(m, dict)]
            collected += messages
            if not (document.get("more") and messages):
                break
            after, wait = str(messages[-1]["id"]), 0.0
        return collected

    def _next_base(self) -> None:
        self.index = (self.index + 1) % len(self.bases)

    def _looking_back(self, room: str) -> bool:
        """True while a message could still reach the region late (inside the resume window)."""
        last = self.session.last_id.get(room)
        newest_ms = id_timestamp_ms(last) if last else self.started_ms
        age_ms = time.time() * 1000 - newest_ms
        return age_ms < self.options.resume_window_ms + LOOK_BACK_MARGIN_MS

    async def poll(self, room: str) -> None:
        session = self.session
        window = self.options.resume_window_ms
        cursor = session.last_id.get(room) or resume_from_now(window)
        session.emit(f"* joined #{room} over HTTP (no presence)")
        failures = 0
        while True:  # until /leave, the end of input, or too many failures in a row
            looking_back = self._looking_back(room)
            wait = self.options.poll_wait
            if looking_back:
                wait = min(wait, LOOK_BACK_POLL_SECONDS)
            try:
                got = await self.read(room, cursor, wait)
                last = session.last_id.get(room)
                if looking_back and last:
                    got += await self.read(room, resume_after(last, window))
            except (aiohttp.ClientError, TimeoutError, HttpError) as exc:
                if isinstance(exc, HttpError) and exc.status == 429:
                    # Over the user's budget or its long-poll cap (docs/protocol.md,
                    # "Limits"): not a failure; wait as told and ask again.
                    await self.options.sleep(retry_after_seconds(exc.document))
                    continue
                failures += 1
                if failures > self.options.backoff.attempts:
                    session.emit(f"! #{room}: giving up after {failures - 1} retries: {exc}")
                    self.gave_up.set()
                    return
                delay = self.options.backoff.delay(failures)
                session.emit(f"! #{room}: {exc or type(exc).__name__}; retrying in {delay:.1f}s")
                self._next_base()
                await self.options.sleep(delay)
                continue
            failures = 0
            session.show(got)
            cursor = max([cursor, *(str(m.get("id", "")) for m in got)])

    def follow(self, room: str) -> None:
        if room not in self.pollers or self.pollers[room].done():
            self.pollers[room] = asyncio.create_task(self.poll(room))

    async def unfollow(self, room: str) -> None:
        task = self.pollers.pop(room, None)
        if task is None:
            self.session.emit(f"! not_member: not polling #{room}")
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.session.emit(f"* left #{room}")

    async def command(self, line: str) -> bool:
        command = parse_command(line)
        if command is None:
            return True
        match command.verb:
            case "quit":
                return False
            case "send":
                await self.post(self.session.room, command.argument)
            case "join":
                self.session.room = command.argument
                self.follow(command.argument)
            case "leave":
                await self.unfollow(command.argument or self.session.room)
            case "history":
                await self.history(command)
            case "who" | "ping" | "raw" | "upload" | "save" | "sendfile":
                self.session.emit(f"! /{command.verb} is not available over HTTP")
            case _:
                self.session.emit(HELP)
        return True

    async def history(self, command: Command) -> None:
        session = self.session
        limit = str(command.limit) if command.limit is not None else "50"
        try:
            status, document = await self._call(
                "GET", session.room, {"limit": limit}, self.options.reply_seconds
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            session.emit(f"! history: {exc or type(exc).__name__}")
            return
        if status == 200 and isinstance(document, dict):
            session.emit(render({"type": "history", "room": session.room, **document}) or "")
        else:
            session.emit(f"! {HttpError(status, document)}")

    async def run(self, lines: AsyncIterator[str]) -> int:
        session = self.session
        session.emit(f"* using the HTTP API at {self.bases[0]}; /help for commands")
        self.follow(session.room)
        finished = False

        async def read_input() -> None:
            nonlocal finished
            async for line in lines:
                if not await self.command(line):
                    break
            await drain(session, self.options.drain_seconds)
            finished = True

        reader = asyncio.create_task(read_input())
        await until(self.gave_up, reader)
        for task in self.pollers.values():
            task.cancel()
        for task in self.pollers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return 0 if finished else 1
