// The page's attachments (docs/protocol.md, "Attachments"), as the CLI does them
// (clients/attachments.py): `upload` -> `upload_slot`, a POST of the slot's fields and then the
// file (`file`, last) to the presigned form, then a `send` whose body references the key.
// A message with an attachment shows an image preview when the server's URL serves it inline
// (it does so only for image/png, jpeg, gif and webp) and a download link otherwise. URLs are
// always asked of the region the pane is connected to when they are needed, so after a
// failover the pane reads that region's copy (or the origin's while the copy is behind).
// Everything shown is set as text or as an http(s) URL attribute, never as HTML.
// A `send` refused as `too_large` offers to send the text as a text/plain attachment.
"use strict";

const INLINE_IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/;
const PREVIEW_TRIES = 20; // asks for a preview while this region's copy is not there yet
const PREVIEW_RETRY_MS = 1000;

// The reference in a message body, or null.
function attachmentOf(body) {
  const reference = body && typeof body === "object" ? body.attachment : null;
  return reference && typeof reference === "object" && typeof reference.key === "string"
    ? reference : null;
}

// `upload`'s contentType: a lower-case type/subtype without parameters, else a plain binary.
function uploadType(type) {
  const bare = String(type || "").split(";")[0].trim().toLowerCase();
  return MEDIA_TYPE.test(bare) ? bare : "application/octet-stream";
}

// Only http(s) URLs reach an attribute (never javascript: or data:).
function safeUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

// Did the server presign this URL to be shown inline (its response-content-disposition)?
function servedInline(url) {
  const disposition = new URL(url).searchParams.get("response-content-disposition") || "";
  return disposition.trim().toLowerCase().startsWith("inline");
}

function describeBody(body) {
  if (typeof body === "string") return body;
  const reference = attachmentOf(body);
  if (reference) return `attachment ${reference.name || reference.key}`;
  return JSON.stringify(body);
}

// upload -> presigned POST -> a send referencing it. `file` is a File or Blob with a name.
async function attachFile(pane, file, name, text = null) {
  const room = pane.room;
  const contentType = uploadType(file.type);
  const ask = { action: "upload", room, contentType, size: file.size };
  if (name) ask.name = name.slice(0, 255);
  const slot = await pane.request(ask);
  if (!slot || slot.type !== "upload_slot") {
    pane.line(`upload refused: ${slot ? `${slot.code}: ${slot.message}` : "no reply"}`, "error");
    return false;
  }
  const url = safeUrl(slot.url);
  if (!url) {
    pane.line("upload refused: the slot's URL is not http(s)", "error");
    return false;
  }
  const form = new FormData();
  for (const [field, value] of Object.entries(slot.fields || {})) form.append(field, value);
  form.append("file", file, name || "file");
  try {
    const answer = await fetch(url, { method: "POST", body: form });
    if (answer.status >= 300) {
      pane.line(`upload: storage answered ${answer.status}`, "error");
      return false;
    }
  } catch (error) {
    pane.line(`upload failed: ${error}`, "error");
    return false;
  }
  const attachment = { key: slot.key, size: file.size, contentType };
  if (name) attachment.name = name.slice(0, 255);
  pane.sendBody({ text: text === null ? name || "a file" : text, attachment });
  return true;
}

// The attachment's element in a message: a preview (inline images) or a download link.
function attachmentElement(pane, room, reference) {
  const box = el("span", { class: "attachment" });
  box.dataset.key = reference.key;
  const label = `${reference.name || "a file"}` +
    (Number.isInteger(reference.size) ? ` (${reference.size} bytes)` : "");
  const link = el("a", { href: "#", class: "download" }, `download ${label}`);
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    const answer = await downloadUrl(pane, room, reference.key);
    if (answer) location.assign(answer.url); // Content-Disposition: attachment: stays here
  });
  box.append(link);
  if (INLINE_IMAGE_TYPES.includes(reference.contentType)) showPreview(pane, room, reference, box);
  return box;
}

// A `download_url` of the pane's current region (null, and a line, when refused).
async function downloadUrl(pane, room, key) {
  const answer = await pane.request({ action: "download", room, key });
  if (!answer || answer.type !== "download_url" || !safeUrl(answer.url)) {
    pane.line(`download refused: ${answer ? `${answer.code}: ${answer.message}` : "no reply"}`,
      "error");
    return null;
  }
  return answer;
}

// The image, once the server serves it inline: the origin's copy is always an attachment
// (download), so ask again (bounded) until this region's copy is there.
async function showPreview(pane, room, reference, box) {
  for (let attempt = 0; attempt < PREVIEW_TRIES; attempt += 1) {
    if (!box.isConnected && attempt > 0) return;
    const answer = await pane.request({ action: "download", room, key: reference.key });
    if (answer && answer.type === "download_url" && safeUrl(answer.url) &&
        servedInline(answer.url)) {
      const image = el("img", { class: "preview", alt: reference.name || "image" });
      // A failed load (the region went down since) asks the connected region once more.
      image.addEventListener("error", () => {
        if (!image.dataset.retried) {
          image.dataset.retried = "true";
          downloadUrl(pane, room, reference.key).then((again) => {
            if (again && servedInline(again.url)) image.src = safeUrl(again.url);
          });
        }
      });
      image.src = safeUrl(answer.url);
      image.dataset.region = String(answer.region || "");
      box.prepend(image);
      return;
    }
    if (answer && answer.type === "error") return; // refused: the link says so when clicked
    await new Promise((resolve) => setTimeout(resolve, PREVIEW_RETRY_MS));
  }
}

// A text refused as too large: offer to send it as a text/plain attachment instead.
function offerAsAttachment(pane, text) {
  const item = el("li", { class: "error" }, "message too large to send; ");
  const button = el("button", { type: "button", class: "as-attachment" }, "send as a file");
  button.dataset.testid = `as-attachment-${pane.index}`;
  button.addEventListener("click", async () => {
    button.disabled = true;
    const file = new Blob([text], { type: "text/plain" });
    const sent = await attachFile(pane, file, "message.txt", "(a long message, attached)");
    if (sent) item.remove();
    else button.disabled = false;
  });
  item.append(button);
  pane.append(item);
}
