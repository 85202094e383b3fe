// The sandbox's chat page: one pane per region, each its own WebSocket connection.
// Plain browser JavaScript, no build step. Protocol: docs/protocol.md.
//
// Continuity, as the CLI client (clients/session.py, clients/websocket_client.py) does it: a
// connection that drops is reopened with exponential backoff and jitter (bounded attempts),
// the room is joined again with `after` = the resume point 5 s before the newest id seen,
// `history` is paged while `more`, and messages are de-duplicated by id and shown in id order.
// The pane pings every 5 minutes and keeps a presence list (`joined.members`, then `member`
// frames, as a map by userId).
// The page's query string can change the timings:
// ?ping=SECONDS&backoff=SECONDS&attempts=N&reply=SECONDS&alive=SECONDS&rejoin=SECONDS.
//
// Overload (as clients/requests.py): a slow region is not a dead one. A `join` or `history`
// without an answer in `reply` s is followed by a `ping`; answered (`pong`, or `rate_limited`),
// the request is asked again on the same connection (same `after`) with a growing, jittered,
// capped wait, and an answer to any attempt counts. Only a ping unanswered for `alive` s (API
// Gateway's integration timeout is 29 s) makes the pane reconnect and move to the next region.
// While a room catches up, live messages are shown but do not move its resume point, so an
// interrupted catch-up resumes before the pages it did not fetch; a room where no message was
// seen yet resumes from when it was first joined.
//
// Order (docs/protocol.md, "Order of a sender's messages"): sends are numbered per connection
// (`seq`) and not awaited, so a burst is accepted in the order typed; a send answered
// `internal`, `sequence_gap` or `rate_limited` (after its hint) is sent again as is (same seq:
// never twice). Messages are placed by id, so what arrives out of order is still shown in order.
// Failover: when the pane's region cannot be connected to, stops answering `ping`, or drops two
// connections in a row within 30 s, the pane moves to the next region (nearest first, measured
// once at load by timing a request to each region's HTTP API) and resumes there; a close whose
// reason reads `retry-after=N` is waited out (N s plus up to half as much again).
"use strict";

const state = { endpoints: null, panes: 0 };
const USERS = ["alice", "bob", "carol", "dave", "erin", "frank"];
const params = new URLSearchParams(location.search);
const CONFIG = {
  pingMs: 1000 * Number(params.get("ping") || 300), // API Gateway closes idle connections at 10 min
  // `refresh` with a fresh sandbox token, well inside its 1-hour lifetime.
  refreshMs: 1000 * Number(params.get("refresh") || 1200),
  backoffMs: 1000 * Number(params.get("backoff") || 0.5),
  backoffCapMs: 15000,
  attempts: Number(params.get("attempts") || 8),
  replyMs: 1000 * Number(params.get("reply") || 10),
  aliveMs: 1000 * Number(params.get("alive") || 30), // a ping unanswered this long: region down
  rejoinMs: 1000 * Number(params.get("rejoin") || 1), // first wait before asking a slow region again
  rejoinCapMs: 30000,
  rejoinAttempts: 10,
  resumeWindowMs: 5000,
  historyPage: 100,
  maxPages: 200,
  stableMs: 30000, // a connection that lasted this long was not a failure of its region
  regionFailures: 2, // early drops in a row before moving to the next region
  resends: 5, // resends of one numbered send
  maxHintMs: 300000,
};

// Message ids (multiregion_chat/runtime/protocol/ids.py): 26 Crockford base32 characters, the first 10 a 48-bit
// millisecond timestamp (exact in a JavaScript number).
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TIME_CHARS = 10;
const ID_LENGTH = 26;

function idTimestampMs(id) {
  let ms = 0;
  for (const char of id.slice(0, TIME_CHARS)) {
    const digit = ALPHABET.indexOf(char);
    if (digit < 0) throw new Error(`not a message id: ${id}`);
    ms = ms * 32 + digit;
  }
  return ms;
}

// Port of resume_after (multiregion_chat/runtime/protocol/ids.py, the one implementation the CLI imports):
// the greatest id of the millisecond before (timestamp(lastId) - windowMs), so that
// `id > resumeAfter(...)` selects every message from that instant on.
function resumeAfter(lastId, windowMs = CONFIG.resumeWindowMs) {
  const start = idTimestampMs(lastId) - windowMs;
  if (start <= 0) return ALPHABET[0].repeat(ID_LENGTH);
  let value = start - 1;
  let chars = "";
  for (let i = 0; i < TIME_CHARS; i += 1) {
    chars = ALPHABET[value % 32] + chars;
    value = Math.floor(value / 32);
  }
  return chars + ALPHABET[31].repeat(ID_LENGTH - TIME_CHARS);
}

// An id of the millisecond `ms` (the least one): only its timestamp matters to resumeAfter.
function idAt(ms) {
  let value = ms;
  let chars = "";
  for (let i = 0; i < TIME_CHARS; i += 1) {
    chars = ALPHABET[value % 32] + chars;
    value = Math.floor(value / 32);
  }
  return chars + ALPHABET[0].repeat(ID_LENGTH - TIME_CHARS);
}

function backoffDelayMs(attempt, hintMs = null, baseMs = CONFIG.backoffMs,
                        capMs = CONFIG.backoffCapMs) {
  // A server hint (close reason `retry-after=N`): at least that, plus up to half again.
  if (hintMs !== null && hintMs > 0) {
    const hint = Math.min(hintMs, CONFIG.maxHintMs);
    return hint + (Math.random() * hint) / 2;
  }
  // Exponential, capped, with equal jitter: half the step fixed, half random.
  const step = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return step / 2 + (Math.random() * step) / 2;
}

// The wait a `rate_limited` answer asks for (ms); null for any other answer.
function retryHintMs(reply) {
  if (!reply || reply.type !== "error" || reply.code !== "rate_limited") return null;
  return Number.isInteger(reply.retryAfterMs) && reply.retryAfterMs > 0
    ? Math.min(reply.retryAfterMs, 30000) : 0;
}

// A ping's answer that shows the region's app at work (slow at worst, not down).
function isAlive(reply) {
  return Boolean(reply) && (reply.type === "pong" || retryHintMs(reply) !== null);
}

function closeHintMs(reason) {
  const found = /retry[-_ ]?after[=: ]\s*([0-9]+(?:\.[0-9]+)?)/i.exec(reason || "");
  return found ? 1000 * Number(found[1]) : null;
}

// The regions nearest first: the time of a request to each region's HTTP API (best of 2;
// the answer does not matter, only how long it took). Unreachable regions go last.
async function nearestRegions(regions) {
  async function timeOnce(url) {
    const started = performance.now();
    try {
      await fetch(url, { mode: "no-cors", cache: "no-store" });
    } catch {
      return Infinity;
    }
    return performance.now() - started;
  }
  const measured = await Promise.all(Object.entries(regions).map(async ([name, urls]) => {
    const url = urls.http || urls.websocket.replace(/^ws/, "http");
    return [name, Math.min(await timeOnce(url), await timeOnce(url))];
  }));
  measured.sort((a, b) => a[1] - b[1]);
  return measured;
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function clock(sentAt) {
  const date = sentAt ? new Date(sentAt) : new Date();
  return isNaN(date) ? "--:--:--" : date.toISOString().slice(11, 19);
}

function who(member) {
  const user = member.userId || "?";
  const label = member.name && member.name !== user ? `${member.name} (${user})` : user;
  return `${label}@${member.region || "?"}`;
}


// The server's JSON rules on the way in (multiregion_chat/runtime/protocol/json_codec.py,
// clients/strict_json.py): at most MAX_FRAME_DEPTH nested arrays/objects, so
// a hostile frame cannot exhaust the stack in JSON.parse or JSON.stringify.
// JSON.parse has no depth option; this linear scan skips strings.
const MAX_FRAME_DEPTH = 64;

function tooDeep(text, limit) {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      if (++depth > limit) return true;
    } else if (c === "]" || c === "}") depth--;
  }
  return false;
}

function parseFrame(data) {
  const text = String(data);
  if (tooDeep(text, MAX_FRAME_DEPTH)) throw new Error("frame nests too deep");
  return JSON.parse(text);
}

class Pane {
  constructor(index, region) {
    this.index = index;
    const fragment = document.getElementById("pane-template").content.cloneNode(true);
    this.root = fragment.querySelector(".pane");
    this.root.dataset.testid = `pane-${index}`;
    this.q = (selector) => this.root.querySelector(selector);
    for (const name of ["region", "state", "user", "name", "room", "connect", "disconnect",
                        "presence", "messages", "text", "send", "file"]) {
      this.q(`.${name}`).dataset.testid = `${name}-${index}`;
    }
    const select = this.q(".region");
    for (const name of Object.keys(state.endpoints.regions)) {
      select.append(el("option", { value: name }, name));
    }
    select.value = region;
    this.q(".user").value = USERS[index % USERS.length];
    this.ws = null;
    this.wanted = false; // the user wants to be connected: reconnect when the socket drops
    this.attempt = 0;
    this.timers = { reconnect: null, ping: null, refresh: null };
    this.seen = new Set();
    this.lastIds = {}; // room -> newest id seen (the resume point's base)
    this.joinedFrom = {}; // room -> an id of when it was first joined (no message seen yet)
    this.syncing = new Set(); // rooms catching up: live messages do not move lastIds
    this.liveNewest = {}; // room -> newest live id shown while it caught up
    this.presence = new Map(); // userId -> member
    this.waiting = new Map(); // ref -> resolve
    this.refs = 0;
    this.reconnects = 0;
    this.resuming = false; // the next join follows a reconnect
    this.seq = 0; // the last seq sent on this connection
    this.outgoing = new Map(); // seq -> numbered send frame not acked yet
    this.resent = new Map(); // seq -> resends so far
    this.openedAt = null; // when the current socket opened
    this.earlyDrops = 0; // connections to this region that dropped early, in a row
    this.regionDown = false; // the current region failed (no pong): move on
    this.hintMs = null; // the server asked to wait this long before reconnecting
    this.q(".identity").addEventListener("submit", (event) => {
      event.preventDefault();
      this.connect();
    });
    this.q(".disconnect").addEventListener("click", () => this.disconnect());
    this.q(".composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendText();
    });
    this.q(".file").addEventListener("change", async () => {
      const input = this.q(".file");
      const file = input.files && input.files[0];
      if (!file) return;
      input.disabled = true;
      try {
        await attachFile(this, file, file.name); // attachments.js
      } finally {
        input.value = "";
        input.disabled = !(this.ws && this.ws.readyState === WebSocket.OPEN);
      }
    });
    this.q(".close").addEventListener("click", () => {
      this.disconnect();
      this.root.remove();
    });
    document.getElementById("panes").append(this.root);
  }

  get room() {
    return this.q(".room").value.trim();
  }

  setState(text, connected = false) {
    const node = this.q(".state");
    node.textContent = text;
    node.classList.toggle("connected", connected);
    this.root.dataset.state = text;
  }

  setControls(connected) {
    for (const name of [".text", ".send", ".file"]) this.q(name).disabled = !connected;
    this.q(".disconnect").disabled = !this.wanted;
    this.q(".connect").disabled = this.wanted;
  }

  line(text, kind = "system") {
    this.append(el("li", { class: kind }, text));
  }

  append(item, before = null) {
    const list = this.q(".messages");
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.insertBefore(item, before);
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  showMessage(message, live = false) {
    if (!message || typeof message.id !== "string" || this.seen.has(message.id)) return;
    this.seen.add(message.id);
    const room = message.room;
    // A live message during a catch-up may be newer than pages not fetched yet: it moves the
    // resume point only once the catch-up is complete.
    const newest = live && this.syncing.has(room) ? this.liveNewest : this.lastIds;
    if (!newest[room] || message.id > newest[room]) newest[room] = message.id;
    const sender = message.sender || {};
    const own = sender.userId === this.q(".user").value.trim();
    const item = el("li", { class: own ? "message own" : "message" });
    item.dataset.id = message.id;
    item.append(el("span", { class: "meta" }, `${clock(message.sentAt)} #${room}`));
    item.append(el("span", { class: "who" }, `${who(sender)}: `));
    const reference = attachmentOf(message.body);
    if (reference) {
      const text = typeof message.body.text === "string" ? message.body.text : "";
      item.append(el("span", { class: "body" }, text));
      item.append(attachmentElement(this, room, reference));
    } else {
      const body = typeof message.body === "string" ? message.body : JSON.stringify(message.body);
      item.append(el("span", { class: "body" }, body));
    }
    // In id order: before the first message with a greater id (ids sort as strings). Most
    // messages are the newest yet: check the last one first.
    const shown = this.q(".messages").querySelectorAll("li.message");
    const last = shown[shown.length - 1];
    const later = !last || last.dataset.id < message.id
      ? null
      : [...shown].find((li) => li.dataset.id > message.id);
    this.append(item, later || null);
  }

  renderPresence() {
    const list = this.q(".presence");
    const items = [...this.presence.keys()].sort().map((user) => {
      const item = el("li", {}, who(this.presence.get(user)));
      item.dataset.user = user;
      return item;
    });
    // Big rooms list one page and their memberCount (docs/protocol.md, "Presence in big rooms").
    if (this.memberCount !== undefined && this.memberCount > this.presence.size) {
      const more = el("li", { class: "muted" }, `(${this.memberCount} in all)`);
      items.push(more);
    }
    list.replaceChildren(...items);
  }

  setMembers(members, memberCount) {
    this.presence = new Map((members || []).map((member) => [member.userId, member]));
    this.memberCount = memberCount;
    this.renderPresence();
  }

  applyMember(frame) {
    const member = frame.member || {};
    if (!member.userId || frame.room !== this.room) return;
    if (frame.event === "left") this.presence.delete(member.userId);
    else this.presence.set(member.userId, member);
    this.renderPresence();
  }

  async url() {
    const region = this.q(".region").value;
    const base = state.endpoints.regions[region].websocket;
    const user = this.q(".user").value.trim();
    const name = this.q(".name").value.trim();
    const query = new URLSearchParams();
    if (state.endpoints.auth) {
      const tokenParams = new URLSearchParams({ sub: user });
      if (name) tokenParams.set("name", name);
      const answer = await fetch(`/_sandbox/token?${tokenParams}`);
      if (!answer.ok) throw new Error(`token: HTTP ${answer.status}`);
      query.set("token", (await answer.json()).token);
    } else {
      query.set("userId", user);
      if (name) query.set("name", name);
    }
    return `${base}?${query}`;
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      this.line("not connected", "error");
      return null;
    }
    const ref = `p${this.index}-${++this.refs}`;
    this.ws.send(JSON.stringify({ ...frame, ref }));
    return ref;
  }

  // Send a frame and resolve with its direct reply (null: no reply in time, or the socket went).
  request(frame, timeoutMs = CONFIG.replyMs) {
    const ref = this.send(frame);
    if (ref === null) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(ref, null), timeoutMs);
      this.waiting.set(ref, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
  }

  settle(ref, reply) {
    const resolve = this.waiting.get(ref);
    if (!resolve) return false;
    this.waiting.delete(ref);
    resolve(reply);
    return true;
  }

  connect() {
    this.wanted = true;
    this.resuming = false;
    this.attempt = 0;
    this.open();
  }

  async open() {
    clearTimeout(this.timers.reconnect);
    this.closeSocket();
    let url;
    try {
      url = await this.url();
    } catch (error) {
      this.line(String(error), "error");
      this.scheduleReconnect();
      return;
    }
    if (!this.wanted) return;
    this.setState("connecting…");
    this.setControls(false);
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      this.openedAt = Date.now();
      this.seq = 0;
      this.setState(`connected to ${this.q(".region").value}`, true);
      this.setControls(true);
      this.joinRoom(ws);
      clearInterval(this.timers.ping);
      this.timers.ping = setInterval(() => this.ping(ws), CONFIG.pingMs);
      clearInterval(this.timers.refresh);
      if (state.endpoints.auth) {
        this.timers.refresh = setInterval(() => this.refreshToken(ws), CONFIG.refreshMs);
      }
    });
    ws.addEventListener("message", (event) => {
      if (this.ws === ws) this.receive(event.data);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.hintMs = closeHintMs(event.reason);
      this.judgeRegion();
      this.dropped();
      this.setState(`disconnected (${event.code})`);
      if (this.wanted) this.line(`connection lost (${event.code})`, "error");
      this.scheduleReconnect();
    });
    ws.addEventListener("error", () => {
      if (this.ws === ws) this.line("connection failed or lost", "error");
    });
  }

  // `frame`'s answer, asked again while the region is slow but alive (header); null when the
  // socket went, or was closed here (no pong either, or still no answer after every try).
  async askUntilAnswered(ws, frame, what) {
    let got = null;
    let limited = null;
    let wake = () => {};
    const nap = (ms) => new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, ms);
    });
    const refs = [];
    try {
      for (let attempt = 1; ; attempt += 1) {
        const ref = this.ws === ws ? this.send(frame) : null;
        if (ref === null) return null;
        refs.push(ref);
        this.waiting.set(ref, (reply) => {
          if (reply && retryHintMs(reply) !== null) limited = reply;
          else if (reply) got = reply;
          wake();
        });
        await nap(CONFIG.replyMs);
        if (!got && !limited && this.ws === ws) {
          const alive = isAlive(await this.request({ action: "ping" }, CONFIG.aliveMs));
          if (!got && !alive && this.ws === ws) {
            this.line(`no answer to ${what}, nor to ping; reconnecting`, "error");
            this.regionDown = true;
            ws.close(4000, "no answer");
            return null;
          }
        }
        if (this.ws !== ws) return null;
        if (got) return got;
        const hintMs = retryHintMs(limited);
        limited = null;
        if (attempt >= CONFIG.rejoinAttempts) {
          this.line(`still no answer to ${what} after ${attempt} tries; reconnecting`, "error");
          ws.close(4000, "no answer");
          return null;
        }
        const delay = backoffDelayMs(attempt, hintMs, CONFIG.rejoinMs, CONFIG.rejoinCapMs);
        const why = hintMs !== null ? "rate limited" : "no answer yet; ping answered: slow";
        this.line(`${what}: ${why}; asking again in ${(delay / 1000).toFixed(1)}s`);
        this.root.dataset.slow = String(Number(this.root.dataset.slow || 0) + 1);
        await nap(delay); // a late answer ends the wait
        if (got) return got;
      }
    } finally {
      for (const ref of refs) this.waiting.delete(ref);
    }
  }

  // Join (again) with after = the resume point, then page `history` while `more`.
  async joinRoom(ws) {
    const room = this.room;
    const join = { action: "join", room };
    const from = this.lastIds[room] || this.joinedFrom[room];
    if (!this.joinedFrom[room]) this.joinedFrom[room] = resumeAfter(idAt(Date.now()), 0);
    if (from) join.after = resumeAfter(from);
    this.syncing.add(room);
    delete this.liveNewest[room];
    try {
      await this.catchUp(ws, room, join);
    } finally {
      this.syncing.delete(room);
      delete this.liveNewest[room];
    }
  }

  async catchUp(ws, room, join) {
    const joined = await this.askUntilAnswered(ws, join, `join #${room}`);
    if (this.ws !== ws || !joined) return;
    if (joined.type !== "joined") {
      this.line(`error ${joined.code}: ${joined.message}`, "error");
      // `internal` means the server no longer knows this connection: only a new one helps.
      if (joined.code === "internal") ws.close(4000, "reconnect");
      return;
    }
    if (this.resuming) this.line(`reconnected to ${this.q(".region").value}`);
    this.resuming = false;
    this.attempt = 0;
    this.root.dataset.joined = room;
    this.setMembers(joined.members, joined.memberCount);
    this.line(`joined #${room}; here: ${(joined.members || []).map(who).join(", ") || "nobody"}`);
    let messages = joined.missed || [];
    messages.forEach((message) => this.showMessage(message));
    let more = joined.more;
    // `missed` may be empty with `more` when its first message did not fit beside
    // the member page: page on from the resume point then.
    let after = messages.length ? messages[messages.length - 1].id : join.after;
    for (let page = 0; more && after && page < CONFIG.maxPages; page += 1) {
      const history = { action: "history", room, after, limit: CONFIG.historyPage };
      const reply = await this.askUntilAnswered(ws, history, `history #${room}`);
      if (this.ws !== ws || !reply || reply.type !== "history") return;
      messages = reply.messages || [];
      messages.forEach((message) => this.showMessage(message));
      more = reply.more && messages.length > 0;
      if (messages.length) after = messages[messages.length - 1].id;
    }
    if (more) return; // stopped early: the resume point stays before what was not fetched
    const live = this.liveNewest[room];
    if (live && (!this.lastIds[room] || live > this.lastIds[room])) this.lastIds[room] = live;
    this.root.dataset.synced = room;
  }

  // Extend the open connection before its token expires (docs/protocol.md, `refresh`);
  // a failure only shows: `token_expired` later makes the pane reconnect with a new token.
  async refreshToken(ws) {
    let reply = null;
    try {
      const tokenParams = new URLSearchParams({ sub: this.q(".user").value.trim() });
      const name = this.q(".name").value.trim();
      if (name) tokenParams.set("name", name);
      const answer = await fetch(`/_sandbox/token?${tokenParams}`);
      if (answer.ok) reply = await this.request({ action: "refresh", token: (await answer.json()).token });
    } catch (error) {
      reply = null;
    }
    if (this.ws === ws && (!reply || reply.type !== "refreshed")) {
      this.line("token refresh failed", "error");
    }
  }

  // No answer within aliveMs: the region is down (reconnect elsewhere). Answered but not
  // pong (`internal`: the server lost the connection): reconnect, to the same region.
  async ping(ws) {
    const reply = await this.request({ action: "ping" }, CONFIG.aliveMs);
    if (this.ws === ws && !isAlive(reply)) {
      this.line("ping failed; reconnecting", "error");
      this.regionDown = !reply;
      ws.close(4000, "no pong");
    }
  }

  scheduleReconnect() {
    if (!this.wanted) return;
    this.attempt += 1;
    if (this.attempt > CONFIG.attempts) {
      this.wanted = false;
      this.setControls(false);
      this.setState(`disconnected (gave up after ${CONFIG.attempts} attempts)`);
      return;
    }
    const delay = backoffDelayMs(this.attempt, this.hintMs);
    this.hintMs = null;
    this.setState(`reconnecting in ${(delay / 1000).toFixed(1)}s ` +
      `(attempt ${this.attempt} of ${CONFIG.attempts})`);
    this.timers.reconnect = setTimeout(() => {
      this.reconnects += 1;
      this.resuming = true;
      this.root.dataset.reconnects = String(this.reconnects);
      this.open();
    }, delay);
  }

  // Did the region fail (never opened, no pong, or early drops in a row)? Then move to the
  // next one, nearest first.
  judgeRegion() {
    const opened = this.openedAt !== null;
    const lasted = opened ? Date.now() - this.openedAt : 0;
    this.openedAt = null;
    let failed = this.regionDown || !opened;
    this.regionDown = false;
    if (!failed) {
      this.earlyDrops = lasted >= CONFIG.stableMs ? 0 : this.earlyDrops + 1;
      failed = this.earlyDrops >= CONFIG.regionFailures;
    }
    if (!failed || !this.wanted || !state.order || state.order.length < 2) return;
    this.earlyDrops = 0;
    const select = this.q(".region");
    const next = state.order[(state.order.indexOf(select.value) + 1) % state.order.length];
    this.line(`region ${select.value} failed; moving to ${next}`, "error");
    select.value = next;
    this.root.dataset.failovers = String(Number(this.root.dataset.failovers || 0) + 1);
  }

  // The socket is gone: fail what waits for a reply, stop the ping timer.
  dropped() {
    clearInterval(this.timers.ping);
    clearInterval(this.timers.refresh);
    for (const ref of [...this.waiting.keys()]) this.settle(ref, null);
    // A send without an ack may or may not have been accepted: say so rather than resend it on
    // the next connection (a new sequence) and risk showing it twice.
    for (const frame of this.outgoing.values()) {
      this.line(`not confirmed: ${describeBody(frame.body)}`, "error");
    }
    this.outgoing.clear();
    this.resent.clear();
    this.root.dataset.joined = "";
    this.root.dataset.synced = "";
    this.setControls(false);
  }

  closeSocket() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
      this.dropped();
    }
  }

  disconnect() {
    this.wanted = false;
    clearTimeout(this.timers.reconnect);
    this.closeSocket();
    this.setState("disconnected");
    this.setControls(false);
    this.presence.clear();
    this.renderPresence();
  }

  sendText() {
    const input = this.q(".text");
    const text = input.value;
    if (!text.trim()) return;
    if (this.sendBody(text)) {
      input.value = "";
      input.focus();
    }
  }

  // A numbered send of `body` (a text, or an attachment's reference); false if not connected.
  sendBody(body) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      this.line("not connected", "error");
      return false;
    }
    this.seq += 1;
    const frame = { action: "send", room: this.room, body, seq: this.seq,
                    ref: `p${this.index}-s${this.seq}` };
    this.outgoing.set(this.seq, frame);
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // An error for a numbered send: resend (as is) what can still succeed; true when handled.
  numberedSendFailed(frame) {
    const match = /-s([0-9]+)$/.exec(frame.ref || "");
    const seq = match ? Number(match[1]) : null;
    if (seq === null || !this.outgoing.has(seq)) return false;
    const tries = this.resent.get(seq) || 0;
    const resendable = ["internal", "sequence_gap", "rate_limited"];
    if (resendable.includes(frame.code) && tries < CONFIG.resends) {
      this.resent.set(seq, tries + 1);
      const from = frame.code === "sequence_gap" && Number.isInteger(frame.expected)
        ? frame.expected : seq;
      const again = [...this.outgoing.keys()].filter((n) => n >= from).sort((a, b) => a - b);
      // rate_limited used up no seq: send it (and those behind it) again after the hint.
      const hint = frame.code === "rate_limited" && Number.isInteger(frame.retryAfterMs)
        ? Math.min(frame.retryAfterMs, 30000) : 0;
      setTimeout(() => {
        for (const n of again) {
          if (this.outgoing.has(n) && this.ws && this.ws.readyState === WebSocket.OPEN) {
            this.ws.send(JSON.stringify(this.outgoing.get(n)));
          }
        }
      }, hint);
      return true;
    }
    const refused = this.outgoing.get(seq);
    this.outgoing.delete(seq);
    if (frame.code === "too_large" && typeof refused.body === "string") {
      offerAsAttachment(this, refused.body); // attachments.js
      return true;
    }
    return false;
  }

  receive(data) {
    let frame;
    try {
      frame = parseFrame(data);
    } catch {
      this.line(`? unreadable frame (${String(data).length} characters)`, "error");
      return;
    }
    // Replies to requests (join, history, ping) go to whoever waits for them.
    if (frame.ref && this.settle(frame.ref, frame)) return;
    if (frame.type === "ack" && Number.isInteger(frame.seq)) this.outgoing.delete(frame.seq);
    if (frame.type === "error" && this.numberedSendFailed(frame)) return;
    switch (frame.type) {
      case "message":
        this.showMessage(frame, true);
        break;
      case "member":
        this.applyMember(frame);
        this.line(`${who(frame.member || {})} ${frame.event} #${frame.room}`);
        break;
      case "members": // the room switched live member events on (live) or off (big room)
        this.memberCount = frame.memberCount;
        this.renderPresence();
        this.line(`#${frame.room} has ${frame.memberCount} members; live join/leave events ` +
          (frame.live ? "on" : "off"));
        break;
      case "presence":
        this.setMembers(frame.members, frame.memberCount);
        this.line(`in #${frame.room}: ${(frame.members || []).map(who).join(", ")}`);
        break;
      case "error":
        this.line(`error ${frame.code}: ${frame.message}`, "error");
        break;
      case "ack":
      case "pong":
      case "joined":
      case "left":
      case "history":
        break;
      default:
        this.line(frame.message ? `gateway: ${frame.message}` : `? ${data}`, "error");
    }
  }
}

async function main() {
  const status = document.getElementById("status");
  try {
    const answer = await fetch("/endpoints.json", { cache: "no-store" });
    state.endpoints = await answer.json();
  } catch (error) {
    status.textContent = `cannot load /endpoints.json: ${error}`;
    return;
  }
  const regions = Object.keys(state.endpoints.regions);
  // Failover order, nearest first (measured in the background; panes keep their region).
  state.order = regions;
  nearestRegions(state.endpoints.regions).then((measured) => {
    state.order = measured.map(([name]) => name);
    document.body.dataset.nearest = state.order.join(",");
  });
  state.paneList = regions.map((region, index) => new Pane(index, region));
  state.panes = regions.length;
  status.textContent = `${regions.length} regions: ${regions.join(", ")}` +
    (state.endpoints.auth ? " (tokens from the sandbox)" : "");
  document.body.dataset.ready = "true";
  document.getElementById("add-pane").addEventListener("click", () => {
    state.paneList.push(new Pane(state.panes, regions[state.panes % regions.length]));
    state.panes += 1;
  });
}

main();
