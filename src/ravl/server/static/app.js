// ravl search page: plain JavaScript, no build step, no external resources.
// Untrusted strings (captions, paths) only ever go through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { busy: 0 };

function setStatus(text, isError) {
  $("status").textContent = text || "";
  $("status").classList.toggle("error", !!isError);
}

async function api(url, options) {
  const started = performance.now();
  const resp = await fetch(url, options);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const msg = body && body.message ? body.message : `HTTP ${resp.status}`;
    const err = new Error(msg);
    err.body = body;
    err.status = resp.status;
    throw err;
  }
  body._ms = Math.round(performance.now() - started);
  return body;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function card(hit, opts) {
  // hit: an image hit {id, uri, score, captions} or a caption hit {id, caption, image_id, uri, score}
  const itemId = hit.image_id !== undefined ? hit.image_id : hit.id;
  const captions = hit.caption !== undefined ? [hit.caption] : (hit.captions || []);
  const node = el("div", "card");
  node.dataset.item = itemId;
  const img = el("img");
  img.loading = "lazy";
  img.alt = captions[0] || "";
  img.src = `/items/${itemId}/thumbnail`;
  node.appendChild(img);
  const meta = el("div", "meta");
  const found = hit.found_by ? " · " + Object.keys(hit.found_by).join("+") : "";
  const score = el("div", "score", hit.score.toFixed(2) + found);
  score.title = "score 0..1: how likely this is the match" +
    (hit.vector_score !== undefined ? ` · vector ${hit.vector_score.toFixed(3)}` : "") +
    (hit.keyword_score !== undefined ? ` · keyword ${hit.keyword_score.toFixed(2)}` : "");
  meta.appendChild(score);
  meta.appendChild(el("div", "cap", captions.slice(0, 2).join(" · ") || "(no caption)"));
  const actions = el("div", "actions");
  const similar = el("a", "similar", "similar");
  const describe = el("a", "describe", "describe");
  const original = el("a", "original", "original");
  original.href = `/items/${itemId}/image`;
  original.target = "_blank";
  original.rel = "noopener";
  actions.append(similar, describe, original);
  meta.appendChild(actions);
  node.appendChild(meta);
  node.title = hit.uri || "";
  node.addEventListener("click", (ev) => {
    if (ev.target === original) return;
    ev.preventDefault();
    if (ev.target === describe) describeItem(itemId); else searchSimilar(itemId, captions[0]);
  });
  if (opts && opts.small) node.classList.add("small");
  return node;
}

function showResults(title, results) {
  const grid = $("results");
  grid.replaceChildren(...results.map((h) => card(h)));
  $("results-title").hidden = false;
  $("results-title").textContent = title;
}

function showCaption(result, ms) {
  $("describe").hidden = false;
  $("caption").textContent = result.caption || "(no caption)";
  const n = result.neighbours.length;
  const how = result.method === "consensus"
    ? `chosen by consensus among the captions of the ${n} neighbours below`
    : `written by ${result.generator} from the captions of the ${n} neighbours below`;
  $("caption-note").textContent = `${how}${result.error ? " — " + result.error : ""} (${ms} ms)`;
  $("neighbours").replaceChildren(...result.neighbours.map((h) => card(h, { small: true })));
}

async function run(label, fn) {
  state.busy += 1;
  setStatus(label + "…");
  try {
    await fn();
  } catch (e) {
    setStatus(`${label} failed: ${e.message}`, true);
    return;
  } finally {
    state.busy -= 1;
  }
}

const FILTERS = ["after", "before", "folder", "near", "camera", "sort"];

function params() {
  const p = { k: $("k").value, target: $("target").value, mode: $("mode").value };
  for (const name of FILTERS) {
    const v = $(name).value.trim();
    if (v && !(name === "sort" && v === "relevance")) p[name] = v;
  }
  return p;
}

function searchQuery(q, p) {
  return new URLSearchParams({ q, ...p }).toString();
}

async function searchText(q, fromHistory) {
  const p = params();
  const query = searchQuery(q, p);
  // the search lives in the URL: the back button and bookmarks bring it back
  if (!fromHistory && location.search !== "?" + query) history.pushState(null, "", "?" + query);
  await run("searching", async () => {
    const body = await api(`/search?${query}`);
    showResults(`“${q}” — ${body.results.length} ${p.target}`, body.results);
    const note = body.good_match ? "" : (body.best_score === null
      ? " · no good match" : ` · no good match (best score ${body.best_score.toFixed(2)})`);
    setStatus(`${body.results.length} results in ${body._ms} ms${note}`);
  });
}

function fromUrl() {
  // restore the form from the URL and search (page load, back and forward)
  const u = new URLSearchParams(location.search);
  for (const name of ["k", "target", "mode"]) {
    const v = u.get(name);
    if (v && [...$(name).options].some((o) => (o.value || o.text) === v)) $(name).value = v;
  }
  for (const name of FILTERS) $(name).value = u.get(name) || (name === "sort" ? "relevance" : "");
  if (FILTERS.some((name) => u.get(name))) $("filters").open = true;
  const q = u.get("q");
  $("q").value = q || "";
  if (q) searchText(q, true);
}

async function searchSimilar(itemId, label) {
  const p = params();
  await run("finding similar images", async () => {
    const body = await api(`/items/${itemId}/similar?k=${p.k}&target=${p.target}`);
    showResults(`Similar to item ${itemId}${label ? " (" + label + ")" : ""}`, body.results);
    setStatus(`${body.results.length} results in ${body._ms} ms`);
    window.scrollTo({ top: $("results-title").offsetTop - 10, behavior: "smooth" });
  });
}

async function describeItem(itemId) {
  const form = new FormData();
  form.append("item", itemId);
  await run("describing", async () => {
    const body = await api("/caption", { method: "POST", body: form });
    showCaption(body, body._ms);
    setStatus(`described item ${itemId}`);
    window.scrollTo({ top: $("describe").offsetTop - 10, behavior: "smooth" });
  });
}

async function useImage(file) {
  if (!file) return;
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const p = params();
  const searchForm = new FormData();
  searchForm.append("image", file, file.name || "pasted.png");
  searchForm.append("k", p.k);
  searchForm.append("target", p.target);
  const captionForm = new FormData();
  captionForm.append("image", file, file.name || "pasted.png");
  await run("searching with the image", async () => {
    const [found, described] = await Promise.all([
      api("/search", { method: "POST", body: searchForm }),
      api("/caption", { method: "POST", body: captionForm }),
    ]);
    showResults(`Similar to ${file.name || "the pasted image"}`, found.results);
    showCaption(described, described._ms);
    setStatus(`${found.results.length} results in ${found._ms} ms; caption in ${described._ms} ms`);
  });
}

function showImagine(body) {
  $("imagine-result").hidden = false;
  $("imagine-output").src = body.image;
  $("imagine-download").href = body.image;
  const a = body.alignment;
  const check = a ? ` · self-check: cosine ${a.prompt_cosine.toFixed(3)} to the prompt, rank ${a.rank} of ${a.of}` : "";
  const seed = body.seeded ? `seed ${body.seed}` : "not seeded";
  $("imagine-provenance").textContent =
    `${body.mode} mode · ${body.generator} · ${seed} · ${body.steps || "?"} steps · ${body.size}${check} · ` +
    `${body.timings.total_s.toFixed(2)} s`;
  showReferences(body.references);
}

function showReferences(refs) {
  $("imagine-refs").replaceChildren(...refs.map((h) => {
    const node = card(h, { small: true });
    if (h.used) node.classList.add("used");
    return node;
  }));
}

async function imagineSubmit() {
  const prompt = $("imagine-prompt").value.trim();
  if (!prompt) { setStatus("describe the image to make", true); return; }
  const form = new FormData();
  form.append("prompt", prompt);
  form.append("mode", $("imagine-mode").value);
  if ($("imagine-seed").value) form.append("seed", $("imagine-seed").value);
  const headers = {};
  if ($("imagine-key").value) headers.Authorization = `Bearer ${$("imagine-key").value}`;
  await run("imagining", async () => {
    try {
      const body = await api("/imagine", { method: "POST", body: form, headers });
      showImagine(body);
      setStatus(`imagined in ${body._ms} ms`);
    } catch (e) {
      if (e.body && e.body.references) {  // no generator: still show what it would be guided by
        $("imagine-result").hidden = false;
        showReferences(e.body.references);
      }
      throw e;
    }
  });
}

async function loadInfo() {
  try {
    const info = await api("/info");
    $("info").textContent = `${info.images} images · ${info.captions} captions · encoder ${info.encoder} · ` +
      `describes with ${(info.generators || ["?"])[0]} · ravl ${info.version}`;
    // no image generator: no Imagine panel (the API still answers /imagine with the references)
    $("imagine").hidden = !info.image_generator;
    $("imagine-note").textContent = info.image_generator
      ? `image generator: ${info.image_generator} (modes: ${info.imagine_modes.join(", ")})` : "";
    $("imagine-key").hidden = !info.imagine_needs_key;
    [...$("imagine-mode").options].forEach((o) => {
      o.disabled = info.image_generator ? !info.imagine_modes.includes(o.value) : false;
    });
  } catch (e) {
    $("info").textContent = `cannot read /info: ${e.message}`;
  }
}

function wire() {
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("q").value.trim();
    if (q) searchText(q); else setStatus("type something to search for", true);
  });
  $("file").addEventListener("change", (ev) => useImage(ev.target.files[0]));
  $("imagine-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    imagineSubmit();
  });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const file = [...(ev.dataTransfer.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) useImage(file); else setStatus("drop an image file", true);
  });
  document.addEventListener("paste", (ev) => {
    const item = [...(ev.clipboardData ? ev.clipboardData.items : [])].find((i) => i.type.startsWith("image/"));
    if (item) { ev.preventDefault(); useImage(item.getAsFile()); }
  });
  window.addEventListener("popstate", fromUrl);
  fromUrl();
  loadInfo();
}

wire();
