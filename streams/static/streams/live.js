// The live page: webcam frames over the WebSocket (/ws/live/, protocol in the streams app), results
// drawn over the video; a dropped photo recognised through POST /api/faces/recognize/.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("live-config").textContent);
  const $ = (id) => document.getElementById(id);

  const MAX_WIDTH = 640; // frames are scaled down to this: bandwidth and server time, not accuracy, bound us
  const JPEG_QUALITY = 0.8;
  const MAX_UNANSWERED = 2; // no new frame while more than this are unanswered, so a slow server is not flooded
  const STALE_MS = 10000; // a frame unanswered this long is given up on, so one lost frame cannot stall sending
  const LATENCY_WINDOW = 30;
  const TRACK_GONE_MS = 2000; // a track unseen this long has left the picture (the log says so)
  const COLORS = { known: "#1a9c3c", unknown: "#e07b00", undecided: "#8a8a8a" };

  const stats = { roundTrips: [], results: 0, dropped: 0, fps: 0 };
  window.liveStats = stats; // read by the browser test

  const state = {
    running: false, ws: null, stream: null, timer: null, encoding: false, resultTimes: [],
    sent: 0, // frames sent on this connection, numbered as the server numbers them (1, 2, 3...)
    pending: new Map(), // frame number -> send time (performance.now())
    tracks: new Map(), // track_id -> {name, lastSeen, logged}
    gallery: null, minFaceSize: null, reconnectDelay: 1000,
  };

  const video = $("video");
  const overlay = $("overlay");
  const grab = document.createElement("canvas");

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(apiError(body, response.status));
    return body;
  }

  function apiError(body, status) {
    const error = body && body.error;
    return error ? `${error.message} (${error.code})` : `The server answered ${status}.`;
  }

  // --- the selectors ------------------------------------------------------------------------

  async function loadChoices(url, select, label, what) {
    try {
      const page = await getJson(`${url}?page_size=500`);
      for (const item of page.results || page) select.append(new Option(label(item), String(item.id)));
    } catch (err) {
      setStatus(`${what} could not be loaded: ${err.message}`, true);
    }
  }

  // --- the camera and the WebSocket ---------------------------------------------------------

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = state.gallery ? `?gallery=${encodeURIComponent(state.gallery)}` : "";
    return `${scheme}//${location.host}${config.wsPath}${query}`;
  }

  async function start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      setStatus("This browser gives no camera to this page (it needs HTTPS or localhost).", true);
      return;
    }
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
      });
    } catch (err) {
      setStatus(`No camera: ${err.message || err.name}`, true);
      return;
    }
    video.srcObject = state.stream;
    await video.play().catch(() => {});
    state.running = true;
    setPressed(true);
    connect();
  }

  function stop() {
    state.running = false;
    clearInterval(state.timer);
    state.timer = null;
    if (state.ws) state.ws.close(1000);
    state.ws = null;
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
    video.srcObject = null;
    overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
    $("names").replaceChildren();
    setPressed(false);
    updateEnrolButton();
    setStatus("Stopped.");
  }

  function setPressed(on) {
    $("start").textContent = on ? "Stop" : "Start";
    $("start").setAttribute("aria-pressed", String(on));
  }

  function connect() {
    const ws = new WebSocket(socketUrl());
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    state.sent = 0; // the server numbers the frames of each connection from 1
    state.pending.clear();
    state.tracks.clear(); // track ids belong to a connection
    delete $("status").dataset.lastError; // a refusal is explained by this connection's own error
    setStatus("Connecting…");
    ws.onmessage = (event) => {
      if (typeof event.data === "string") onMessage(JSON.parse(event.data));
    };
    ws.onclose = (event) => onClose(ws, event);
  }

  function onClose(ws, event) {
    if (ws !== state.ws) return; // an older connection, already replaced
    clearInterval(state.timer);
    state.timer = null;
    updateEnrolButton();
    if (!state.running) return;
    if (event.code === 4401 || event.code === 4400) {
      stop(); // sending again would be refused the same way; the error message is already shown
      setStatus($("status").dataset.lastError || `Refused by the server (${event.code}).`, true);
      return;
    }
    // A restarted server or a dropped network: try again, waiting longer each time (up to 15 s).
    setStatus(`Connection lost (${event.code}); reconnecting…`, true);
    setTimeout(() => state.running && connect(), state.reconnectDelay);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 15000);
  }

  function onMessage(message) {
    switch (message.type) {
      case "ready":
        state.reconnectDelay = 1000;
        state.minFaceSize = message.min_face_size;
        setStatus(`Connected as ${message.user}. Sending ${fps()} frames/s.`);
        scheduleFrames();
        updateEnrolButton();
        break;
      case "result":
        onResult(message);
        break;
      case "config":
        state.minFaceSize = message.min_face_size;
        setStatus(message.gallery ? "Gallery changed." : "Recognising everyone.");
        break;
      case "enrolled":
        $("enrol-result").textContent = `Enrolled face #${message.face_id} for ${message.person_name}.`;
        setStatus(`Enrolled a face for ${message.person_name}.`);
        break;
      case "error":
        onError(message);
        break;
      default:
        break; // "pong" and anything newer than this page: nothing to show
    }
  }

  function onError(message) {
    const text = `${message.message} (${message.code})`;
    $("status").dataset.lastError = text;
    setStatus(text, true);
    if (message.frame) answered(message.frame);
    if (["permission_denied", "not_found", "no_face"].includes(message.code) && $("enrol-result")) {
      $("enrol-result").textContent = text;
    }
  }

  const fps = () => Number($("fps").value) || 5;

  function scheduleFrames() {
    clearInterval(state.timer);
    state.timer = setInterval(sendFrame, 1000 / fps());
  }

  // Frame n answered (a result or an error): it and every earlier frame still waiting are done, since
  // the server keeps only the latest frame and never answers the ones it replaced.
  function answered(frame) {
    for (const n of state.pending.keys()) if (n <= frame) state.pending.delete(n);
  }

  function sendFrame() {
    const ws = state.ws;
    if (!isOpen() || state.encoding || !video.videoWidth) return;
    const now = performance.now();
    for (const [n, sentAt] of state.pending) if (now - sentAt > STALE_MS) state.pending.delete(n);
    if (state.pending.size > MAX_UNANSWERED) return;
    const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
    grab.width = Math.round(video.videoWidth * scale);
    grab.height = Math.round(video.videoHeight * scale);
    grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
    state.encoding = true;
    grab.toBlob((blob) => {
      state.encoding = false;
      if (!blob || ws !== state.ws || ws.readyState !== WebSocket.OPEN) return;
      state.sent += 1;
      state.pending.set(state.sent, performance.now());
      ws.send(blob);
    }, "image/jpeg", JPEG_QUALITY);
  }

  function onResult(message) {
    const now = performance.now();
    const sentAt = state.pending.get(message.frame);
    if (sentAt !== undefined) {
      stats.roundTrips.push(Math.round(now - sentAt));
      if (stats.roundTrips.length > LATENCY_WINDOW) stats.roundTrips.shift();
    }
    answered(message.frame);
    stats.results += 1;
    stats.dropped = message.dropped || 0;
    state.resultTimes.push(now);
    while (state.resultTimes.length && now - state.resultTimes[0] > 3000) state.resultTimes.shift();
    stats.fps = state.resultTimes.length > 1
      ? Math.round(((state.resultTimes.length - 1) * 10000) / (now - state.resultTimes[0])) / 10 : 0;
    draw(overlay, message.width, message.height, null, message.faces.map(liveFace));
    namesList($("names"), message.faces.map(liveFace));
    logAppearances(message.faces, now);
    showStats();
  }

  function liveFace(face) {
    const kind = face.name == null ? "undecided" : face.name === "unknown" ? "unknown" : "known";
    return { box: face.box, kind, text: kind === "undecided" ? "…" : face.name, personId: face.person_id };
  }

  function showStats() {
    const sorted = [...stats.roundTrips].sort((a, b) => a - b);
    $("stat-fps").textContent = stats.fps.toFixed(1);
    $("stat-latency").textContent = sorted.length ? String(sorted[Math.floor((sorted.length - 1) / 2)]) : "–";
    $("stat-dropped").textContent = String(stats.dropped);
    $("stat-results").textContent = String(stats.results);
  }

  function namesList(list, faces) {
    list.replaceChildren(...faces.map((face) => {
      const item = document.createElement("li");
      item.className = face.kind;
      item.textContent = face.text;
      item.dataset.personId = face.personId == null ? "" : String(face.personId); // undecided, unknown: none
      return item;
    }));
  }

  function logAppearances(faces, now) {
    for (const face of faces) {
      const track = state.tracks.get(face.track_id) || { name: null, logged: false };
      track.lastSeen = now;
      if (face.name != null && !track.logged) {
        track.name = face.name;
        track.logged = true;
        addLog(`${face.name} appeared`);
      }
      state.tracks.set(face.track_id, track);
    }
    for (const [id, track] of state.tracks) {
      if (now - track.lastSeen > TRACK_GONE_MS) {
        if (track.logged) addLog(`${track.name} left`);
        state.tracks.delete(id);
      }
    }
  }

  function addLog(text) {
    const log = $("log");
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    log.prepend(item);
    while (log.children.length > 20) log.lastElementChild.remove();
  }

  // --- drawing --------------------------------------------------------------------------------

  // Boxes and labels in the picture's own pixels; the canvas is scaled by CSS like the picture.
  function draw(canvas, width, height, image, faces) {
    if (canvas.width !== width) canvas.width = width; // resizing reallocates: only when the size changes
    if (canvas.height !== height) canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    if (image) ctx.drawImage(image, 0, 0, width, height);
    // Lines and text sized in screen pixels (picture pixels per CSS pixel), so labels read the same on a
    // 640 px frame and on a 4000 px photo shrunk to the column's width.
    const unit = canvas.clientWidth ? width / canvas.clientWidth : Math.max(width, height) / 640;
    const size = Math.max(8, Math.round(14 * unit));
    ctx.lineWidth = Math.max(1, 2.5 * unit);
    ctx.font = `600 ${size}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    for (const face of faces) {
      const { top, right, bottom, left } = face.box;
      ctx.strokeStyle = COLORS[face.kind];
      ctx.strokeRect(left, top, right - left, bottom - top);
      const pad = Math.round(size / 4);
      const textWidth = ctx.measureText(face.text).width + 2 * pad;
      const labelHeight = size + 2 * pad;
      // Above the box when there is room, inside its top edge otherwise.
      const y = top - labelHeight >= 0 ? top - labelHeight : top;
      const x = Math.min(Math.max(0, left - ctx.lineWidth / 2), Math.max(0, width - textWidth));
      ctx.fillStyle = COLORS[face.kind];
      ctx.fillRect(x, y, textWidth, labelHeight);
      ctx.fillStyle = "#fff";
      ctx.fillText(face.text, x + pad, y + pad);
    }
  }

  // --- enrolment (staff) ----------------------------------------------------------------------

  const isOpen = () => Boolean(state.ws && state.ws.readyState === WebSocket.OPEN);

  function updateEnrolButton() {
    if ($("enrol")) $("enrol").disabled = !(isOpen() && $("person").value);
  }

  function enrol() {
    const personId = Number($("person").value);
    if (!personId || !isOpen()) return;
    $("enrol-result").textContent = "Enrolling…";
    state.ws.send(JSON.stringify({ type: "enrol", person_id: personId }));
  }

  // --- a photo through the HTTP API -----------------------------------------------------------

  async function recognisePhoto(file) {
    if (!file) return;
    setStatus(`Recognising ${file.name}…`);
    const form = new FormData();
    form.append("image", file, file.name);
    if (state.gallery) form.append("gallery", state.gallery);
    const response = await fetch(config.recognizeUrl, {
      method: "POST", body: form, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(apiError(body, response.status));
    const image = await loadImage(file);
    const faces = body.faces.map((face) => {
      const personId = face.top_match ? face.top_match.person_id : null;
      return { box: face.bbox, kind: face.label === "unknown" ? "unknown" : "known", text: face.label, personId };
    });
    const canvas = $("photo-canvas");
    canvas.hidden = false;
    // The server's boxes are in the picture as displayed (EXIF applied); the browser's <img> is too.
    draw(canvas, image.naturalWidth, image.naturalHeight, image, faces);
    namesList($("photo-names"), faces);
    setStatus(body.message || `${faces.length} face(s) found.`);
  }

  function loadImage(file) {
    return new Promise((resolve, reject) => {
      const url = URL.createObjectURL(file);
      const image = new Image();
      image.onload = () => { URL.revokeObjectURL(url); resolve(image); };
      image.onerror = () => { URL.revokeObjectURL(url); reject(new Error("not an image this browser shows")); };
      image.src = url;
    });
  }

  // --- wiring ---------------------------------------------------------------------------------

  $("start").addEventListener("click", () => (state.running ? stop() : start()));
  $("fps").addEventListener("change", () => state.timer && scheduleFrames());
  $("gallery").addEventListener("change", () => {
    state.gallery = $("gallery").value || null;
    if (!isOpen()) return; // the next connection asks for it in its URL
    const message = { type: "config", gallery: state.gallery === null ? null : Number(state.gallery) };
    if (state.minFaceSize) message.min_face_size = state.minFaceSize; // unchanged: only the gallery changes
    state.ws.send(JSON.stringify(message));
  });
  if (config.staff) {
    $("person").addEventListener("change", updateEnrolButton);
    $("enrol").addEventListener("click", enrol);
  }
  const photoFailed = (err) => setStatus(`The photo was not recognised: ${err.message || err}`, true);
  $("photo").addEventListener("change", (event) => recognisePhoto(event.target.files[0]).catch(photoFailed));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault(); // without it the browser opens the dropped file instead
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    recognisePhoto(event.dataTransfer.files[0]).catch(photoFailed);
  });
  loadChoices(config.galleriesUrl, $("gallery"), (g) => g.name, "Galleries");
  if (config.staff) {
    loadChoices(config.peopleUrl, $("person"), (p) => (p.external_id ? `${p.name} (${p.external_id})` : p.name),
      "People");
  }
})();
