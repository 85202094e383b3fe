"""The WebSocket session: state across reconnects (rooms, ids seen, presence) and requests.

``ChatSession`` joins and re-joins rooms from the resume point, catches up with
``history`` pages, keeps presence, pings, and handles the lines the user types. The HTTP
fallback (clients/http_client.py) reuses its state and output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Iterable
from typing import Any, TextIO

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from multiregion_chat.clients import attachments
from multiregion_chat.clients.commands import HELP, Command, parse_command
from multiregion_chat.clients.options import HISTORY_PAGE, MAX_CATCH_UP_PAGES, ClientOptions
from multiregion_chat.clients.render import render, render_entry
from multiregion_chat.clients.requests import Message, RequestChannel, is_alive_answer
from multiregion_chat.clients.resume import is_valid_id, resume_after, resume_from_now
from multiregion_chat.clients.safe_text import printable_lines
from multiregion_chat.clients.strict_json import loads_frame

__all__ = ["HELP", "ChatSession", "Message", "drain", "until"]

SEQ_REF = "s"  # the ref of numbered send n is "s<n>"
RESEND_ATTEMPTS = 5  # resends of one numbered send (after one of RESENDABLE)
RESENDABLE = ("internal", "sequence_gap", "rate_limited")


def _members_by_user(members: Any) -> dict[str, dict[str, Any]]:
    return {str(m["userId"]): m for m in members or [] if isinstance(m, dict) and m.get("userId")}


class ChatSession(RequestChannel):
    """What the client knows across reconnects, and the WebSocket requests.

    ``rooms`` are re-joined after a reconnect; ``last_id`` is the newest id seen per room (the
    resume point's base); ``seen`` de-duplicates; ``presence`` is a map by ``userId`` per room
    (``joined.members``, ``presence`` replies and ``member`` frames).
    """

    def __init__(self, room: str, out: TextIO, options: ClientOptions | None = None) -> None:
        super().__init__(options or ClientOptions())
        self.room = room
        self.out = out
        self.rooms: dict[str, None] = {room: None}  # ordered set
        self.joined: set[str] = set()  # on the current connection
        self.last_id: dict[str, str] = {}
        # room -> an id of the moment it was first joined: the resume point of a room in which
        # no message was seen yet (else a reconnect would miss what was sent meanwhile)
        self.joined_from: dict[str, str] = {}
        self.seen: set[str] = set()
        self.presence: dict[str, dict[str, dict[str, Any]]] = {}
        self.paging: dict[str, str] = {}  # room -> cursor of a presence page asked for
        self.member_counts: dict[str, Any] = {}  # room -> memberCount of a ``members`` frame
        self.unechoed: set[str] = set()  # acked ids whose message has not arrived yet
        self.held: dict[str, list[Message]] = {}  # live messages held back while catching up
        self.ready = asyncio.Event()  # connected and every room re-joined
        # Numbered sends (docs/protocol.md, "Order of a sender's messages"): seq per connection;
        # ``outgoing`` holds the frames not acked yet, resent as is after internal/sequence_gap.
        self.next_seq = 1
        self.outgoing: dict[int, Message] = {}
        self.resends: dict[int, int] = {}
        # Live messages held ``options.reorder_seconds`` so they are printed in id order.
        self.unshown: list[tuple[float, Message]] = []
        self._background: set[asyncio.Future[None]] = set()
        self.attachments = attachments.AttachmentShelf()  # numbered for /save N
        self.refused_text: str | None = None  # the last text refused as too large: /sendfile

    @property
    def verbose(self) -> bool:
        return self.options.verbose

    def emit(self, text: str) -> None:
        # The last gate before the terminal: render() escapes each field it prints (a newline
        # in a body too); this catches whatever else reaches the output (clients/safe_text.py).
        self.out.write(printable_lines(text) + "\n")
        self.out.flush()

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
        ref = frame.get("ref")
        if isinstance(ref, str) and ref in self.stale:
            self.stale.discard(ref)  # its requester gave up: not shown, state unchanged
            return
        quiet = isinstance(ref, str) and ref in self.quiet
        on_kind = self._on_kind.get(str(frame.get("type")))
        shown: Message | None = on_kind(self, frame, quiet) if on_kind else frame
        self.take_reply(ref, shown if shown is not None else frame)
        if quiet or shown is None:
            return
        line = render(shown, self.verbose)
        if line:
            self.emit(line)

    # Each returns the frame to show (and to hand to whoever waits for it), or None.

    def _on_ack(self, frame: Message, quiet: bool) -> Message | None:
        if str(frame.get("id")) not in self.seen:
            self.unechoed.add(str(frame.get("id")))
        if isinstance(frame.get("seq"), int):
            self.outgoing.pop(frame["seq"], None)
            self.resends.pop(frame["seq"], None)
        return frame

    def _on_error(self, frame: Message, quiet: bool) -> Message | None:
        ref = frame.get("ref")
        if isinstance(ref, str) and ref.startswith(SEQ_REF) and ref[1:].isdigit():
            return self._numbered_send_failed(int(ref[1:]), frame)
        return frame

    def _on_message(self, frame: Message, quiet: bool) -> Message | None:
        room = str(frame.get("room"))
        if room in self.held:
            self.held[room].append(frame)
            return None
        if not self._first_time(frame):
            return None
        note = self.attachments.note(frame)
        if note is not None:
            self.emit(note)
        if self.options.reorder_seconds > 0 and _running_loop() is not None:
            self._hold_for_order(frame)
            return None
        return frame

    def _on_member(self, frame: Message, quiet: bool) -> Message | None:
        self._apply_member(frame)
        return frame

    def _on_presence(self, frame: Message, quiet: bool) -> Message | None:
        room = str(frame.get("room"))
        page = _members_by_user(frame.get("members"))
        if self.paging.pop(room, None):  # a later page: add to the first ones
            self.presence.setdefault(room, {}).update(page)
        else:
            self.presence[room] = page
        return frame

    def _on_members(self, frame: Message, quiet: bool) -> Message | None:
        # The room switched live member events on or off.
        self.member_counts[str(frame.get("room"))] = frame.get("memberCount")
        return frame

    def _on_left(self, frame: Message, quiet: bool) -> Message | None:
        room = str(frame.get("room"))
        self.joined.discard(room)
        self.rooms.pop(room, None)
        self.presence.pop(room, None)
        return frame

    def _on_joined(self, frame: Message, quiet: bool) -> Message | None:
        if quiet:  # join_room handles its own reply
            return frame
        room = str(frame.get("room"))
        self.joined.add(room)
        self.presence[room] = _members_by_user(frame.get("members"))
        missed = [m for m in frame.get("missed") or [] if self._first_time(m)]
        return dict(frame, missed=missed)

    _on_kind: dict[str, Any] = {
        "ack": _on_ack,
        "error": _on_error,
        "message": _on_message,
        "member": _on_member,
        "presence": _on_presence,
        "members": _on_members,
        "left": _on_left,
        "joined": _on_joined,
    }

    # ------------------------------------------------------------ live messages in id order

    def _hold_for_order(self, frame: Message) -> None:
        """Print ``frame`` after ``reorder_seconds``, with what arrived meanwhile, in id order.

        Live frames can arrive out of id order (two bus events delivered concurrently, sharded
        fan-out in big rooms); holding each briefly lets a slightly late earlier one go first.
        """
        loop = asyncio.get_running_loop()
        self.unshown.append((loop.time(), frame))
        loop.call_later(self.options.reorder_seconds, self.release_held)

    def release_held(self, everything: bool = False) -> None:
        """Print the held live messages that are due (all with ``everything``), in id order:
        the due ones, and every held one whose id is below the greatest due id."""
        if not self.unshown:
            return
        loop = _running_loop()
        due_before = (loop.time() if loop else 0.0) - self.options.reorder_seconds + 1e-3
        due = [m for at, m in self.unshown if everything or loop is None or at <= due_before]
        if not due:
            return
        top = max(str(m.get("id", "")) for m in due)
        out = [m for _, m in self.unshown if str(m.get("id", "")) <= top]
        self.unshown = [(at, m) for at, m in self.unshown if str(m.get("id", "")) > top]
        for message in sorted(out, key=lambda m: str(m.get("id", ""))):
            self.emit(render(message, self.verbose) or "")

    # ------------------------------------------------------------------ numbered sends

    async def send_message(self, room: str, body: Any) -> None:
        """Send a message numbered for this connection's order, without waiting for its ack.

        Lines typed (or pasted) quickly are pipelined; the server accepts them in ``seq`` order.
        """
        if not await self.wait_ready() or self.ws is None:
            self.emit("! not connected; line dropped")
            return
        seq = self.next_seq
        self.next_seq += 1
        frame: Message = {"action": "send", "room": room, "body": body, "seq": seq}
        frame["ref"] = f"{SEQ_REF}{seq}"
        self.outgoing[seq] = frame
        await self._send_raw(frame)

    async def _send_all(self, frames: list[Message], delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        for frame in frames:  # in seq order, one after the other
            await self._send_raw(frame)

    async def _send_raw(self, frame: Message) -> None:
        if self.ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(json.dumps(frame))

    def _numbered_send_failed(self, seq: int, error: Message) -> Message | None:
        """An error for numbered send ``seq``: resend what can still succeed, else show it."""
        if seq not in self.outgoing:
            return error
        code = error.get("code")
        if code in RESENDABLE and self.resends.get(seq, 0) < RESEND_ATTEMPTS:
            self.resends[seq] = self.resends.get(seq, 0) + 1
            start = error.get("expected") if code == "sequence_gap" else seq
            if not isinstance(start, int):
                start = seq
            # A rate_limited send used up no seq: it and the ones behind it (which wait for
            # it, then answer sequence_gap) go again once the server's hint has passed.
            hint = error.get("retryAfterMs") if code == "rate_limited" else None
            delay = min(hint, 30_000) / 1000 if isinstance(hint, int) and hint > 0 else 0.0
            frames = [self.outgoing[n] for n in sorted(self.outgoing) if n >= start]
            task = asyncio.ensure_future(self._send_all(frames, delay))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return None
        refused = self.outgoing.pop(seq, {})
        self.resends.pop(seq, None)
        body = error.get("message")
        if code == "too_large" and isinstance(refused.get("body"), str):
            self.refused_text = refused["body"]
            return dict(error, message=f"{body} (seq {seq}); /sendfile sends it as a file")
        return dict(error, message=f"{body} (seq {seq})")

    # ------------------------------------------------------------------ the connection

    def attach(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.joined = set()
        self.unhealthy = None

    def detach(self) -> None:
        """The connection is gone: fail what waits for a reply on it."""
        self.ws = None
        self.ready.clear()
        self.joined = set()
        # A numbered send without an ack may or may not have been accepted; sending it again
        # on the next connection (a new sequence) could show it twice: say so instead.
        for seq in sorted(self.outgoing):
            self.emit(f"! not confirmed (connection lost): {_text(self.outgoing[seq])}")
        self.outgoing.clear()
        self.resends.clear()
        self.next_seq = 1
        self.fail_requests()

    async def join_room(self, room: str) -> bool:
        """Join ``room``; when it was seen before, catch up from the resume point.

        ``joined.missed``, then ``history`` pages while ``more``, and the live messages held
        back meanwhile are printed together: each new one once, in id order.
        """
        frame: Message = {"action": "join", "room": room}
        last = self.last_id.get(room) or self.joined_from.get(room)
        self.joined_from.setdefault(room, resume_from_now(0))
        if last is not None and is_valid_id(last):
            frame["after"] = resume_after(last, self.options.resume_window_ms)
        held = self.held.setdefault(room, [])
        caught_up: list[Message] = []
        complete = False
        try:
            # No answer in time (overload, or a failed integration: API Gateway's error frame
            # carries no ref): the join may still have happened, and live messages may be
            # arriving with a gap before them. They are held; the join is asked again with the
            # same ``after`` while the region answers ping, else the client reconnects.
            reply = await self.ask_until_answered(frame, f"join #{room}")
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
            more = await self._page_history(
                room, caught_up, bool(reply.get("more")), frame.get("after")
            )
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

    async def _page_history(
        self, room: str, caught_up: list[Message], more: bool, after: str | None = None
    ) -> bool:
        """Page ``history`` after the last of ``caught_up`` (else ``after``: `joined.missed`
        may be empty with `more` when its first message did not fit beside the member
        page) while ``more`` (bounded), adding to it; whether more remain."""
        for _ in range(MAX_CATCH_UP_PAGES):
            cursor = caught_up[-1]["id"] if caught_up else after
            if not (more and cursor):
                return more
            frame = {"action": "history", "room": room, "after": cursor, "limit": HISTORY_PAGE}
            # Unanswered: asked again while the region answers ping (else None: reconnected).
            page = await self.ask_until_answered(frame, f"history #{room}")
            if page is None or page.get("type") != "history":
                if page is not None:
                    self.emit(render(page, self.verbose) or "")
                return more
            messages = page.get("messages") or []
            caught_up += messages
            more = bool(page.get("more")) and bool(messages)
        if more:
            self.emit(f"* (stopped catching up in #{room}; /history for the rest)")
        return more

    async def rejoin(self) -> None:
        """Join every room (after a reconnect: from the resume point)."""
        for room in list(self.rooms):
            if self.ws is None:
                return
            await self.join_room(room)

    async def keepalive(self) -> None:
        """Ping every ``ping_seconds``. No answer within ``alive_seconds``: the region is down
        (drop the connection; the reconnect loop fails over). Answered but not ``pong``
        (``internal``: the server lost the connection): reconnect, to the same region."""
        while self.ws is not None:
            await asyncio.sleep(self.options.ping_seconds)
            reply = await self.probe()
            if is_alive_answer(reply):
                continue
            if self.ws is not None:
                reason = render(reply) if reply is not None else "no reply"
                self.emit(f"! ping failed ({reason}); reconnecting")
                if reply is None:
                    self.unhealthy = "no pong"
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
        command = parse_command(line)
        if command is None:
            return True
        if command.verb == "quit":
            return False
        run = self._commands.get(command.verb)
        if run is None:
            self.emit(HELP)
        else:
            await run(self, command)
        return True

    async def _send_line(self, command: Command) -> None:
        await self.send_message(self.room, command.argument)

    async def _join_command(self, command: Command) -> None:
        self.room = command.argument
        self.rooms[command.argument] = None  # joined now, or when reconnected
        if await self.wait_ready():
            await self.join_room(command.argument)

    async def _leave_command(self, command: Command) -> None:
        await self.user_request({"action": "leave", "room": command.argument or self.room})

    async def _history_command(self, command: Command) -> None:
        frame: Message = {"action": "history", "room": self.room}
        if command.limit is not None:
            frame["limit"] = command.limit
        await self.user_request(frame)

    async def _who_command(self, command: Command) -> None:
        frame: Message = {"action": "presence", "room": self.room}
        if command.argument:  # the "next" cursor of the previous page
            frame["cursor"] = command.argument
            self.paging[self.room] = command.argument
        await self.user_request(frame)

    async def _ping_command(self, command: Command) -> None:
        await self.user_request({"action": "ping"})

    async def _raw_command(self, command: Command) -> None:
        if await self.wait_ready() and self.ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(command.argument)

    async def _upload_command(self, command: Command) -> None:
        if await self.wait_ready():
            await attachments.upload(self, command.argument)

    async def _sendfile_command(self, command: Command) -> None:
        if await self.wait_ready():
            await attachments.send_refused_as_file(self)

    async def _save_command(self, command: Command) -> None:
        if await self.wait_ready():
            await attachments.save(self, command.argument)

    _commands: dict[str, Any] = {
        "send": _send_line,
        "join": _join_command,
        "leave": _leave_command,
        "history": _history_command,
        "who": _who_command,
        "ping": _ping_command,
        "raw": _raw_command,
        "upload": _upload_command,
        "save": _save_command,
        "sendfile": _sendfile_command,
    }

    def busy(self) -> bool:
        """Replies, acks, own messages still expected, or messages not printed yet."""
        return bool(self.waiting or self.unechoed or self.held or self.outgoing or self.unshown)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _text(frame: Message) -> str:
    body = frame.get("body")
    return body if isinstance(body, str) else json.dumps(body)


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
    session.release_held(everything=True)
