// The sandbox's chat page: one pane per region, each its own WebSocket connection.
// Plain browser JavaScript, no build step. Protocol: docs/protocol.md.
"use strict";

const state = { endpoints: null, panes: 0 };
const USERS = ["alice", "bob", "carol", "dave", "erin", "frank"];

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

class Pane {
  constructor(index, region) {
    this.index = index;
    const fragment = document.getElementById("pane-template").content.cloneNode(true);
    this.root = fragment.querySelector(".pane");
    this.root.dataset.testid = `pane-${index}`;
    this.q = (selector) => this.root.querySelector(selector);
    for (const name of ["region", "state", "user", "name", "room", "connect", "disconnect",
                        "messages", "text", "send"]) {
      this.q(`.${name}`).dataset.testid = `${name}-${index}`;
    }
    const select = this.q(".region");
    for (const name of Object.keys(state.endpoints.regions)) {
      select.append(el("option", { value: name }, name));
    }
    select.value = region;
    this.q(".user").value = USERS[index % USERS.length];
    this.ws = null;
    this.seen = new Set();
    this.lastId = "";
    this.refs = 0;
    this.q(".identity").addEventListener("submit", (event) => {
      event.preventDefault();
      this.connect();
    });
    this.q(".disconnect").addEventListener("click", () => this.disconnect());
    this.q(".composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendText();
    });
    this.q(".close").addEventListener("click", () => {
      this.disconnect();
      this.root.remove();
    });
    document.getElementById("panes").append(this.root);
  }

  setState(text, connected = false) {
    const node = this.q(".state");
    node.textContent = text;
    node.classList.toggle("connected", connected);
    this.root.dataset.state = text;
  }

  line(text, kind = "system") {
    const item = el("li", { class: kind }, text);
    this.append(item);
  }

  append(item) {
    const list = this.q(".messages");
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.append(item);
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  showMessage(message) {
    if (this.seen.has(message.id)) return;
    this.seen.add(message.id);
    if (message.id > this.lastId) this.lastId = message.id;
    const sender = message.sender || {};
    const own = sender.userId === this.q(".user").value.trim();
    const item = el("li", { class: own ? "message own" : "message" });
    item.dataset.id = message.id;
    item.append(el("span", { class: "meta" }, `${clock(message.sentAt)} #${message.room}`));
    item.append(el("span", { class: "who" }, `${who(sender)}: `));
    const body = typeof message.body === "string" ? message.body : JSON.stringify(message.body);
    item.append(el("span", { class: "body" }, body));
    this.append(item);
  }

  async url() {
    const region = this.q(".region").value;
    const base = state.endpoints.regions[region].websocket;
    const user = this.q(".user").value.trim();
    const name = this.q(".name").value.trim();
    const query = new URLSearchParams();
    if (state.endpoints.auth) {
      const params = new URLSearchParams({ sub: user });
      if (name) params.set("name", name);
      const answer = await fetch(`/_sandbox/token?${params}`);
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
      return;
    }
    this.ws.send(JSON.stringify({ ...frame, ref: `p${this.index}-${++this.refs}` }));
  }

  async connect() {
    this.disconnect();
    const room = this.q(".room").value.trim();
    let url;
    try {
      url = await this.url();
    } catch (error) {
      this.line(String(error), "error");
      return;
    }
    this.setState("connecting…");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.setState(`connected to ${this.q(".region").value}`, true);
      for (const name of [".disconnect", ".text", ".send"]) this.q(name).disabled = false;
      this.q(".connect").disabled = true;
      const join = { action: "join", room };
      if (this.lastId) join.after = this.lastId;
      this.send(join);
    });
    ws.addEventListener("message", (event) => this.receive(event.data));
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setState(`disconnected (${event.code})`);
      for (const name of [".disconnect", ".text", ".send"]) this.q(name).disabled = true;
      this.q(".connect").disabled = false;
      this.root.dataset.joined = "";
    });
    ws.addEventListener("error", () => this.line("connection failed or refused", "error"));
  }

  disconnect() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
      this.setState("disconnected");
      for (const name of [".disconnect", ".text", ".send"]) this.q(name).disabled = true;
      this.q(".connect").disabled = false;
      this.root.dataset.joined = "";
    }
  }

  sendText() {
    const input = this.q(".text");
    const text = input.value;
    if (!text.trim()) return;
    this.send({ action: "send", room: this.q(".room").value.trim(), body: text });
    input.value = "";
    input.focus();
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this.line(`? ${data}`, "error");
      return;
    }
    switch (frame.type) {
      case "message":
        this.showMessage(frame);
        break;
      case "joined": {
        this.root.dataset.joined = frame.room;
        const members = (frame.members || []).map(who).join(", ") || "nobody";
        this.line(`joined #${frame.room}; here: ${members}`);
        for (const message of frame.missed || []) this.showMessage(message);
        break;
      }
      case "left":
        this.root.dataset.joined = "";
        this.line(`left #${frame.room}`);
        break;
      case "member":
        this.line(`${who(frame.member || {})} ${frame.event} #${frame.room}`);
        break;
      case "presence":
        this.line(`in #${frame.room}: ${(frame.members || []).map(who).join(", ")}`);
        break;
      case "history":
        for (const message of frame.messages || []) this.showMessage(message);
        break;
      case "error":
        this.line(`error ${frame.code}: ${frame.message}`, "error");
        break;
      case "ack":
      case "pong":
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
  regions.forEach((region, index) => new Pane(index, region));
  state.panes = regions.length;
  status.textContent = `${regions.length} regions: ${regions.join(", ")}` +
    (state.endpoints.auth ? " (tokens from the sandbox)" : "");
  document.body.dataset.ready = "true";
  document.getElementById("add-pane").addEventListener("click", () => {
    new Pane(state.panes, regions[state.panes % regions.length]);
    state.panes += 1;
  });
}

main();
