"""The WebSocket session: state across reconnects (rooms, ids seen, presence) and requests.

``ChatSession`` joins and re-joins rooms from the resume point, catches up with
``history`` pages, keeps presence, pings, and handles the lines the user types. The HTTP
fallback (clients/http_client.py) reuses its state and output.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Iterable
from typing import Any, TextIO

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from clients.options import HISTORY_PAGE, MAX_CATCH_UP_PAGES, ClientOptions
from clients.render import render, render_entry
from clients.resume import is_valid_id, resume_after
from clients.strict_json import loads_frame

HELP = (
    "commands: /join ROOM  /leave [ROOM]  /history [N]  /who [NEXT]  /ping  /raw JSON  /quit;"
    " other lines are sent to the current room"
)

Message = dict[str, Any]


def _members_by_user(members: Any) -> dict[str, dict[str, Any]]:
    return {str(m["userId"]): m for m in members or [] if isinstance(m, dict) and m.get("userId")}


class ChatSession:
    """What the client knows across reconnects, and the WebSocket requests.

    ``rooms`` are re-joined after a reconnect; ``last_id`` is the newest id seen per room (the
    resume point's base); ``seen`` de-duplicates; ``presence`` is a map by ``userId`` per room
    (``joined.members``, ``presence`` replies and ``member`` frames).
    """

    def __init__(self, room: str, out: TextIO, options: ClientOptions | None = None) -> None:
        self.options = options or ClientOptions()
        self.room = room
        self.out = out
        self.rooms: dict[str, None] = {room: None}  # ordered set
        self.joined: set[str] = set()  # on the current connection
        self.last_id: dict[str, str] = {}
        self.seen: set[str] = set()
        self.presence: dict[str, dict[str, dict[str, Any]]] = {}
        self.paging: dict[str, str] = {}  # room -> cursor of a presence page asked for
        self.member_counts: dict[str, Any] = {}  # room -> memberCount of a ``members`` frame
        self.unechoed: set[str] = set()  # acked ids whose message has not arrived yet
        self.held: dict[str, list[Message]] = {}  # live messages held back while catching up
        self.waiting: dict[str, asyncio.Future[Message | None]] = {}
        self.quiet: set[str] = set()  # refs whose reply the requester shows itself
        self.ready = asyncio.Event()  # connected and every room re-joined
        self.ws: ClientConnection | None = None
        self._refs = itertools.count(1)

    @property
    def verbose(self) -> bool:
        return self.options.verbose

    def emit(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def next_ref(self) -> str:
        return f"c{next(self._refs)}"

    # --------------------------------------------------------------- messages and state

    def _first_time(self, message: Message) -> bool:
        message_id = message.get("id")
        if not isinstance(message_id, str):
            return True
        self.unechoed.discard(message_id)
        if message_id in self.seen:
            return False
        self.seen.add(message_id)
        room = str(message.get("room"))
        if message_id > self.last_id.get(room, ""):
            self.last_id[room] = message_id
        return True

    def show(self, messages: Iterable[Message]) -> None:
        """Print the messages not seen before, each once, in id order."""
        for message in sorted(messages, key=lambda m: str(m.get("id", ""))):
            if self._first_time(message):
                self.emit(render_entry(message))

    def members(self, room: str) -> list[dict[str, Any]]:
        """The room's presence as this client knows it, sorted by userId."""
        by_user = self.presence.get(room, {})
        return [by_user[user] for user in sorted(by_user)]

    def _apply_member(self, frame: Message) -> None:
        member = frame.get("member")
        if not isinstance(member, dict) or not member.get("userId"):
            return
        by_user = self.presence.setdefault(str(frame.get("room")), {})
        if frame.get("event") == "left":
            by_user.pop(str(member["userId"]), None)
        else:
            by_user[str(member["userId"])] = member

    def receive(self, raw: str | bytes) -> None:
        try:
            frame = loads_frame(raw)
        except (ValueError, RecursionError):
            self.emit(f"? unreadable frame ({len(raw)} characters)")
            return
        self.receive_frame(frame)

    def receive_frame(self, frame: Any) -> None:
        """Take in one server frame: state, replies to requests, output."""
        if not isinstance(frame, dict):
            self.emit(render(frame) or "")
            return
        kind = frame.get("type")
        room = str(frame.get("room"))
        ref = frame.get("ref")
        quiet = isinstance(ref, str) and ref in self.quiet
        if kind == "ack":
            if str(frame.get("id")) not in self.seen:
                self.unechoed.add(str(frame.get("id")))
        elif kind == "message":
            if room in self.held:
                self.held[room].append(frame)
                return
            if not self._first_time(frame):
                return
        elif kind == "member":
            self._apply_member(frame)
        elif kind == "presence":
            page = _members_by_user(frame.get("members"))
            if self.paging.pop(room, None):  # a later page: add to the first ones
                self.presence.setdefault(room, {}).update(page)
            else:
                self.presence[room] = page
        elif kind == "members":  # the room switched live member events on or off
            self.member_counts[room] = frame.get("memberCount")
        elif kind == "left":
            self.joined.discard(room)
            self.rooms.pop(room, None)
            self.presence.pop(room, None)
        elif kind == "joined" and not quiet:
            self.joined.add(room)
            self.presence[room] = _members_by_user(frame.get("members"))
            missed = [m for m in frame.get("missed") or [] if self._first_time(m)]
            frame = dict(frame, missed=missed)
        if isinstance(ref, str):
            future = self.waiting.pop(ref, None)
            if future is not None and not future.done():
                future.set_result(frame)
        if quiet:
            return
        line = render(frame, self.verbose)
        if line:
            self.emit(line)

    # ------------------------------------------------------------------ the connection

    def attach(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.joined = set()

    def detach(self) -> None:
        """The connection is gone: fail what waits for a reply on it."""
        self.ws = None
        self.ready.clear()
        self.joined = set()
        for future in self.waiting.values():
            if not future.done():
                future.set_result(None)
        self.waiting.clear()
        self.quiet.clear()

    async def drop_connection(self) -> None:
        """Close the connection (the reconnect loop opens a new one)."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def request(self, frame: Message, *, quiet: bool = False) -> Message | None:
        """Send ``frame`` with a fresh ref; its direct reply, None without one (bounded)."""
        ws = self.ws
        if ws is None:
            return None
        ref = self.next_ref()
        future: asyncio.Future[Message | None] = asyncio.get_running_loop().create_future()
        self.waiting[ref] = future
        if quiet:
            self.quiet.add(ref)
        try:
            await ws.send(json.dumps({**frame, "ref": ref}))
            return await asyncio.wait_for(future, self.options.reply_seconds)
        except (ConnectionClosed, TimeoutError):
            return None
        finally:
            self.waiting.pop(ref, None)
            self.quiet.discard(ref)

    async def join_room(self, room: str) -> bool:
        """Join ``room``; when it was seen before, catch up from the resume point.

        ``joined.missed``, then ``history`` pages while ``more``, and the live messages held
        back meanwhile are printed together: each new one once, in id order.
        """
        frame: Message = {"action": "join", "room": room}
        last = self.last_id.get(room)
        if last is not None and is_valid_id(last):
            frame["after"] = resume_after(last, self.options.resume_window_ms)
        held = self.held.setdefault(room, [])
        caught_up: list[Message] = []
        complete = False
        try:
            reply = await self.request(frame, quiet=True)
            if reply is None:
                return False
            if reply.get("type") != "joined":
                self.emit(render(reply, self.verbose) or "")
                if reply.get("code") == "internal":  # the server lost the connection: reconnect
                    await self.drop_connection()
                else:
                    self.rooms.pop(room, None)
                return False
            self.joined.add(room)
            self.rooms[room] = None
            self.presence[room] = _members_by_user(reply.get("members"))
            self.emit(render({**reply, "missed": [], "more": False}) or "")
            caught_up += reply.get("missed") or []
            more = bool(reply.get("more"))
            for _ in range(MAX_CATCH_UP_PAGES):
                if not (more and caught_up):
                    break
                page = await self.request(
                    {
                        "action": "history",
                        "room": room,
                        "after": caught_up[-1]["id"],
                        "limit": HISTORY_PAGE,
                    },
                    quiet=True,
                )
                if page is None or page.get("type") != "history":
                    if page is not None:
                        self.emit(render(page, self.verbose) or "")
                    break
                messages = page.get("messages") or []
                caught_up += messages
                more = bool(page.get("more")) and bool(messages)
            else:
                self.emit(f"* (stopped catching up in #{room}; /history for the rest)")
            complete = not more
            return True
        finally:
            if self.held.get(room) is held:
                del self.held[room]
            if not complete:
                # Interrupted: show no live message newer than what was caught up, so the next
                # resume point stays before the messages not fetched yet (they come again).
                limit = max([self.last_id.get(room, ""), *(str(m["id"]) for m in caught_up)])
                held = [m for m in held if str(m.get("id", "")) <= limit]
            self.show(caught_up + held)

    async def rejoin(self) -> None:
        """Join every room (after a reconnect: from the resume point)."""
        for room in list(self.rooms):
            if self.ws is None:
                return
            await self.join_room(room)

    async def keepalive(self) -> None:
        """Ping every ``ping_seconds``; no pong: drop the connection (a reconnect follows)."""
        while self.ws is not None:
            await asyncio.sleep(self.options.ping_seconds)
            reply = await self.request({"action": "ping"}, quiet=True)
            if reply is not None and reply.get("type") == "pong":
                continue
            if self.ws is not None:
                reason = render(reply) if reply is not None else "no reply"
                self.emit(f"! ping failed ({reason}); reconnecting")
                await self.drop_connection()
            return

    async def keep_token_fresh(self) -> None:
        """``refresh`` the connection with a freshly minted token every
        ``refresh_seconds``; a refusal is shown, and the server's ``token_expired``
        later makes the client reconnect (with a fresh token)."""
        mint = self.options.fresh_token
        while self.ws is not None and mint is not None:
            await asyncio.sleep(self.options.refresh_seconds)
            reply = await self.request({"action": "refresh", "token": mint()}, quiet=True)
            if reply is None or reply.get("type") != "refreshed":
                reason = render(reply) if reply is not None else "no reply"
                self.emit(f"! token refresh failed ({reason})")
                return

    async def wait_ready(self) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), self.options.ready_seconds)
        return self.ready.is_set()

    async def user_request(self, frame: Message) -> None:
        """A request the user typed: waits (bounded) for a connection, then for the reply."""
        if not await self.wait_ready():
            self.emit("! not connected; line dropped")
            return
        if await self.request(frame) is None:
            self.emit(f"! no reply to {frame['action']} (connection lost or too slow)")

    # -------------------------------------------------------------------- commands

    async def command(self, line: str) -> bool:
        """Handle one input line; False to quit."""
        line = line.rstrip("\n")
        if not line.strip():
            return True
        if not line.startswith("/"):
            await self.user_request({"action": "send", "room": self.room, "body": line})
            return True
        verb, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        if verb in ("quit", "exit"):
            return False
        if verb == "join" and argument:
            self.room = argument
            self.rooms[argument] = None  # joined now, or when reconnected
            if await self.wait_ready():
                await self.join_room(argument)
        elif verb == "leave":
            await self.user_request({"action": "leave", "room": argument or self.room})
        elif verb == "history":
            frame: Message = {"action": "history", "room": self.room}
            if argument.isdigit():
                frame["limit"] = int(argument)
            await self.user_request(frame)
        elif verb in ("who", "presence"):
            frame = {"action": "presence", "room": self.room}
            if argument:  # the "next" cursor of the previous page
                frame["cursor"] = argument
                self.paging[self.room] = argument
            await self.user_request(frame)
        elif verb == "ping":
            await self.user_request({"action": "ping"})
        elif verb == "raw" and argument:
            if await self.wait_ready() and self.ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(argument)
        else:
            self.emit(HELP)
        return True

    def busy(self) -> bool:
        """Replies or own messages still expected."""
        return bool(self.waiting or self.unechoed or self.held)


async def until(done: asyncio.Event, work: Awaitable[Any]) -> None:
    """Await ``work`` unless ``done`` is set first."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(done.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, waiter):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending


async def drain(session: ChatSession, seconds: float) -> None:
    """End of input: wait (bounded) for replies and our own messages, then for stragglers."""
    deadline = asyncio.get_running_loop().time() + seconds
    while session.busy() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(min(0.3, seconds))
