// The listing page's script, inlined into the page by inference/_page.py and
// allowed by its hash in the Content-Security-Policy. Without it the plain
// <form> still works (multipart POST answered with an HTML result page).
//
// Flow: a photo is picked, dropped or taken -> shown -> downscaled on a canvas
// (longest side settings.maxSide px, JPEG) -> POSTed as the raw body to this
// page's URL with Accept: application/json -> the top suggestions as radio
// buttons, the best one checked (none when the answer is unsure), the other
// categories one click away. Server text is inserted with textContent only.
"use strict";
(() => {
  const settings = JSON.parse(document.getElementById("settings").textContent);
  const $ = (id) => document.getElementById(id);
  const form = $("upload");
  const photo = $("photo");
  const camera = $("camera");
  const cameraButton = $("camera-button");
  const drop = $("drop");
  const preview = $("preview");
  const previewImg = $("preview-img");
  const result = $("result");
  let previewUrl = null;
  previewImg.addEventListener("error", () => (preview.hidden = true)); // HEIC: no preview
  let generation = 0; // answers to an older photo are dropped

  document.documentElement.classList.add("js");
  cameraButton.hidden = false;
  cameraButton.addEventListener("click", () => camera.click());
  for (const input of [photo, camera]) {
    input.addEventListener("change", () => {
      if (input.files.length > 0) classify(input.files[0]);
    });
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (photo.files.length > 0) classify(photo.files[0]);
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const files = event.dataTransfer ? event.dataTransfer.files : [];
    if (files.length > 0) classify(files[0]);
  });

  async function classify(file) {
    const mine = ++generation;
    showPreview(file);
    showBusy();
    let body = file;
    let type = "image/jpeg";
    try {
      body = await downscale(file);
    } catch (_) {
      // The browser cannot decode it (HEIC, a broken file, not an image): send
      // the bytes as they are, typed as bytes (a .txt would say text/plain), so
      // the server, which sniffs the format, decodes it or names the problem.
      type = "application/octet-stream";
    }
    if (body.size > settings.uploadLimit) {
      if (mine === generation) showError("PAYLOAD_TOO_LARGE");
      return;
    }
    let response;
    try {
      response = await fetch(location.pathname, {
        method: "POST",
        headers: { "Content-Type": type, Accept: "application/json" },
        body,
      });
    } catch (_) {
      if (mine === generation) showError("UNAVAILABLE");
      return;
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (_) {
      // not our JSON: a proxy's or Lambda's own answer (413 over its 6 MB limit)
    }
    if (mine !== generation) return;
    if (response.ok && answer && answer.scores) {
      showAnswer(answer);
    } else {
      let code = answer && answer.error ? String(answer.error.code) : "";
      if (!code && response.status === 413) code = "PAYLOAD_TOO_LARGE";
      // The same choice as message_for() in inference/_page.py.
      const known = Object.hasOwn(settings.messages, code);
      showError(known ? code : response.status >= 500 ? "UNAVAILABLE" : "DEFAULT");
    }
  }

  // Longest side at most settings.maxSide px, re-encoded as JPEG. Always
  // through the canvas: EXIF orientation is applied and metadata (GPS
  // position, camera serial) is dropped before the photo leaves the phone.
  async function downscale(file) {
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    const scale = Math.min(1, settings.maxSide / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    const context = canvas.getContext("2d");
    context.fillStyle = "#fff"; // transparency on white, as the server decodes it
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    return new Promise((resolve, reject) => {
      canvas.toBlob(
        (blob) => (blob ? resolve(blob) : reject(new Error("JPEG encoding failed"))),
        "image/jpeg",
        settings.quality,
      );
    });
  }

  function showPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    previewImg.src = previewUrl;
    preview.hidden = false;
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function show(...nodes) {
    result.replaceChildren(...nodes);
    result.hidden = false;
    result.setAttribute("aria-busy", "false");
  }

  function showBusy() {
    const busy = element("div", { class: "busy" });
    busy.append(element("progress", { "aria-label": settings.busy }), element("span", {}, settings.busy));
    show(busy);
    result.setAttribute("aria-busy", "true");
  }

  function showError(code) {
    show(element("p", { class: "error", role: "alert", "data-code": code }, settings.messages[code]));
  }

  function percent(p) {
    return p < 0.005 ? "<1%" : `${Math.round(p * 100)}%`;
  }

  function choice(label, score, checked) {
    const row = element("label", { class: "choice" });
    const input = element("input", { type: "radio", name: "category", value: label });
    input.checked = checked;
    input.addEventListener("change", () => updateChosen(label));
    row.append(input, element("span", { class: "name" }, settings.names[label] || label));
    if (score !== null) row.append(element("span", { class: "pct" }, percent(score)));
    return row;
  }

  function updateChosen(label) {
    const chosen = $("chosen");
    chosen.textContent = "";
    chosen.append(settings.chosen + " ", element("strong", {}, settings.names[label] || label));
  }

  function showAnswer(answer) {
    const unsure = answer.unsure === true || answer.label === null;
    const top = (answer.top || []).slice(0, settings.topK);
    const shown = new Set(top.map((t) => t.label));
    const nodes = [element("h2", {}, settings.title)];
    if (unsure) nodes.push(element("p", { class: "note", id: "unsure" }, settings.unsure));
    const fieldset = element("fieldset");
    fieldset.append(element("legend", {}, settings.legend));
    const suggested = element("div", { class: "choices" });
    top.forEach((t, i) => {
      const score = t.score !== undefined ? t.score : t.probability;
      suggested.append(choice(t.label, score, !unsure && i === 0));
    });
    const more = element("details");
    more.append(element("summary", {}, settings.more));
    const others = element("div", { class: "choices all" });
    for (const label of Object.keys(answer.scores)) {
      if (!shown.has(label)) others.append(choice(label, null, false));
    }
    more.append(others);
    fieldset.append(suggested, more);
    nodes.push(fieldset, element("p", { class: "chosen", id: "chosen" }, unsure ? settings.pick : ""));
    show(...nodes);
    if (!unsure && top.length > 0) updateChosen(top[0].label);
  }
})();
