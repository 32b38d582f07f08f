// ravl read panel: POST /read (text in an image, optionally translated). Plain JavaScript, no
// build step; untrusted strings (text read, translations, file names) only go through textContent.
"use strict";

(function () {
  const panel = document.getElementById("read");
  if (!panel) return;
  const make = (tag, attrs, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const form = make("form", { id: "read-form" });
  const file = make("input", { id: "read-file", type: "file", accept: "image/*", "aria-label": "image to read" });
  const lang = make("input", { id: "read-lang", type: "text", value: "eng", size: "8",
                               title: "language(s) to read: eng, zh, chi_sim, fra+eng" });
  const target = make("input", { id: "read-to", type: "text", size: "10", placeholder: "translate to",
                                 title: "a language name or ISO code, e.g. Spanish or es (empty: no translation)" });
  const button = make("button", { id: "read-btn", type: "submit" }, "Read");
  form.append(file, lang, target, button);
  const note = make("p", { id: "read-note", class: "muted" });
  const table = make("table", { id: "read-lines" });
  panel.append(make("h2", {}, "Read text in an image"), form, note, table);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    table.replaceChildren();
    if (!file.files.length) { note.textContent = "choose an image first"; return; }
    const body = new FormData();
    body.append("image", file.files[0]);
    body.append("lang", lang.value.trim() || "eng");
    if (target.value.trim()) body.append("translate_to", target.value.trim());
    note.textContent = "reading…";
    button.disabled = true;
    try {
      const resp = await fetch("/read", { method: "POST", body });
      const out = await resp.json().catch(() => ({}));
      if (!resp.ok) { note.textContent = out.message || `HTTP ${resp.status}`; return; }
      for (const line of out.lines) {
        const row = make("tr");
        row.append(make("td", {}, line.text));
        if (out.translation) row.append(make("td", {}, line.translation || ""));
        row.append(make("td", { class: "muted" }, line.confidence.toFixed(2)));
        table.append(row);
      }
      const parts = [];
      if (!out.lines.length) parts.push(out.hint ? out.hint.message : "no text found");
      if (out.translation) parts.push(`translated with ${out.translation.describe}`);
      if (out.error) parts.push(out.error);
      note.textContent = parts.join("; ") || `${out.lines.length} line(s) read`;
    } catch (e) {
      note.textContent = `read failed: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  });
})();
