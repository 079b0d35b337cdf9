// The dashboard: one WebSocket to /ws/events/ (session auth), events listed newest first with their
// crops, camera tiles kept up to date. Filters reconnect with new query parameters; a lost
// connection is retried with backoff. Plain JavaScript, no build step.
"use strict";

const config = JSON.parse(document.getElementById("dashboard-config").textContent);
const statusLine = document.getElementById("status");
const eventList = document.getElementById("events");
const cameraList = document.getElementById("cameras");
const eventCount = document.getElementById("event-count");
const filters = {
  camera: document.getElementById("camera"),
  gallery: document.getElementById("gallery"),
  kind: document.getElementById("kind"),
};
const MAX_EVENTS = 200; // rows kept on the page
let socket = null;
let retryDelay = 1000;
let retryTimer = null;

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function timeOf(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function renderEvent(event) {
  const id = `event-${event.id}`;
  let row = document.getElementById(id);
  const isNew = !row;
  if (isNew) row = element("li");
  row.id = id;
  row.className = event.kind;
  row.dataset.phase = event.phase;
  row.dataset.updated = event.last_seen;
  row.replaceChildren();
  if (event.crop_url) {
    const img = element("img");
    // The crop changes while the face is in view (a better one is kept): the query busts the cache.
    img.src = `${event.crop_url}?v=${encodeURIComponent(event.last_seen)}`;
    img.alt = `Face of ${event.person_name || "an unknown person"}`;
    row.append(img);
  } else {
    row.append(element("span", "nocrop"));
  }
  const text = element("div");
  const who = element("span", "who", event.kind === "known" ? event.person_name || `Person ${event.person}` : "Unknown");
  who.dataset.role = "name";
  text.append(who);
  const open = event.closed_at === null;
  text.append(element("span", open ? "badge open" : "badge", open ? "in view" : "left"));
  const distance = event.distance === null ? "" : ` · distance ${event.distance.toFixed(3)}`;
  const meta = element("div", "meta",
    `${event.source_name} · ${timeOf(event.first_seen)}–${timeOf(event.last_seen)} · named in ` +
    `${Math.round(event.time_to_name_ms)} ms${distance}`);
  text.append(meta);
  row.append(text);
  if (isNew) {
    // Newest first by first sighting.
    const before = [...eventList.children].find((other) => other.dataset.first < event.first_seen);
    row.dataset.first = event.first_seen;
    eventList.insertBefore(row, before || null);
    while (eventList.children.length > MAX_EVENTS) eventList.lastElementChild.remove();
  }
  eventCount.textContent = String(eventList.children.length);
}

function renderCamera(camera) {
  cameraList.querySelector(".empty")?.remove();
  const id = `camera-${camera.id}`;
  let tile = document.getElementById(id);
  if (!tile) {
    tile = element("li");
    tile.id = id;
    cameraList.append(tile);
  }
  tile.className = camera.stale ? "stale" : camera.state;
  tile.dataset.state = camera.state;
  tile.replaceChildren(
    element("span", "name", camera.name),
    element("span", "detail", `${camera.stale ? "no report (worker gone?)" : camera.state}` +
      ` · ${camera.fps_analysed.toFixed(1)} of ${camera.fps_in.toFixed(1)} fps · ${camera.frames_dropped} dropped`),
  );
  if (camera.last_error) tile.append(element("span", "detail", camera.last_error));
}

function removeCamera(id) {
  document.getElementById(`camera-${id}`)?.remove();
}

function feedUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams({ backlog: String(config.backlog) });
  for (const [name, select] of Object.entries(filters)) if (select.value) query.set(name, select.value);
  return `${scheme}//${location.host}${config.wsPath}?${query}`;
}

function connect() {
  clearTimeout(retryTimer);
  if (socket) {
    socket.onclose = null;
    socket.close();
  }
  setStatus("Connecting…");
  const ws = new WebSocket(feedUrl());
  socket = ws;
  ws.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.type === "hello") {
      retryDelay = 1000;
      eventList.replaceChildren();
      cameraList.replaceChildren(element("li", "empty", "No camera."));
      data.cameras.forEach(renderCamera);
      data.events.forEach(renderEvent);
      eventCount.textContent = String(eventList.children.length);
      setStatus("Live: events appear as they happen.");
    } else if (data.type === "event") {
      renderEvent(data);
    } else if (data.type === "camera") {
      renderCamera(data);
    } else if (data.type === "camera_removed") {
      removeCamera(data.id);
    } else if (data.type === "error") {
      setStatus(`${data.message} (${data.code})`, true);
    }
  };
  ws.onclose = (close) => {
    if (socket !== ws) return;
    if (close.code === 4401) {
      setStatus("Signed out: sign in again to see the feed.", true);
      return;
    }
    if (close.code === 4400) return; // the error message said which filter is wrong
    setStatus(`Disconnected; reconnecting in ${Math.round(retryDelay / 1000)} s…`, true);
    retryTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  };
}

async function fillSelect(select, url, label, value) {
  try {
    const response = await fetch(`${url}?page_size=500`, { credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.json();
    for (const item of body.results || []) {
      select.append(new Option(label(item), value(item)));
    }
  } catch (error) {
    // The filters stay at "all": the feed works without them.
  }
}

for (const select of Object.values(filters)) select.addEventListener("change", connect);
// Keep the connection alive through proxies that close idle sockets.
setInterval(() => socket?.readyState === WebSocket.OPEN && socket.send('{"type":"ping"}'), 30000);
connect();
fillSelect(filters.camera, config.camerasUrl, (c) => c.name, (c) => String(c.id));
fillSelect(filters.gallery, config.galleriesUrl, (g) => g.name, (g) => g.slug);
