// The atlas page: every unit of every conv layer, from the manifests that
// zfcourse.atlas writes (format documented there). Plain JavaScript, no
// libraries. A unit's permalink is #<layer>/<channel> for the first network
// and #<network>/<layer>/<channel> for the others.
"use strict";

(function () {
  const root = document.getElementById("atlas");
  if (!root) return;
  const base = new URL(root.dataset.index, document.baseURI);
  const state = { index: null, net: null, manifest: null, layer: null,
                  unit: null, cache: {} };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "style") Object.assign(node.style, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined) node.append(c);
    }
    return node;
  }

  const fmt = (v) => (v === null ? "none" : Number(v).toPrecision(3));
  const pct = (v) => `${(100 * v).toFixed(1)}%`;

  async function fetchJSON(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  async function manifestOf(net) {
    if (!state.cache[net.name]) {
      const url = new URL(net.manifest, base);
      state.cache[net.name] = fetchJSON(url).then((m) => ({ m, url }));
    }
    return state.cache[net.name];
  }

  // ---------------------------------------------------------------- routing

  function permalink(net, layer, channel) {
    const first = state.index.networks[0].name;
    const head = net.name === first ? "" : `${net.name}/`;
    return `#${head}${layer}` + (channel === null ? "" : `/${channel}`);
  }

  function parse(hash) {
    const parts = decodeURIComponent(hash.replace(/^#/, ""))
      .split("/").filter((p) => p);
    const nets = state.index.networks;
    let net = nets[0];
    if (parts.length && nets.some((n) => n.name === parts[0])) {
      const name = parts.shift();
      net = nets.find((n) => n.name === name);
    } else if (parts.length === 3) {
      return { error: `There is no network “${parts[0]}” in this atlas.` };
    }
    return { net, layer: parts[0] || null, channel: parts[1] ?? null };
  }

  async function route() {
    const want = parse(location.hash);
    if (want.error) return show(state.index.networks[0], null, null, want.error);
    await show(want.net, want.layer, want.channel);
  }

  // ---------------------------------------------------------------- views

  function existing(m) {
    return Object.entries(m.layers)
      .map(([name, l]) => `${name} (channels 0–${l.channels - 1})`)
      .join(", ");
  }

  async function show(net, layer, channel, error) {
    const { m, url } = await manifestOf(net);
    state.net = net;
    state.manifest = m;
    state.url = url;
    const names = Object.keys(m.layers);
    if (!error && layer !== null && !m.layers[layer]) {
      error = `${net.title} has no layer “${layer}”. Its layers are ` +
        `${existing(m)}.`;
    }
    const L = error ? null : m.layers[layer || names[0]];
    let unit = null;
    if (!error && channel !== null) {
      const c = Number(channel);
      if (!/^\d+$/.test(channel) || c >= L.channels) {
        error = `${layer} of ${net.title} has no channel “${channel}”: ` +
          `its channels are 0–${L.channels - 1}. Layers: ${existing(m)}.`;
      } else {
        unit = L.units[c];
      }
    }
    state.layer = layer !== null && m.layers[layer] ? layer : names[0];
    state.unit = unit;
    render(error);
  }

  function render(error) {
    const m = state.manifest;
    root.replaceChildren(controls(), summary(m));
    if (error) {
      root.append(el("p", { class: "atlas-error", role: "alert" }, error));
    }
    if (state.unit) root.append(detail(state.unit));
    root.append(grid());
    const name = state.unit
      ? `${state.net.title}, ${state.layer}, unit ${state.unit.channel}`
      : `${state.net.title}, ${state.layer}`;
    document.title = `Atlas: ${name}`;
    if (state.unit || error) root.scrollIntoView();
  }

  function controls() {
    const nets = el("select", { "aria-label": "network",
      onchange: (e) => go(state.index.networks[e.target.selectedIndex],
        null, null) });
    for (const n of state.index.networks) {
      const o = el("option", {}, n.title);
      if (n.name === state.net.name) o.selected = true;
      nets.append(o);
    }
    const layers = el("div", { class: "atlas-layers", role: "group" });
    for (const [name, l] of Object.entries(state.manifest.layers)) {
      const b = el("button", { type: "button",
        onclick: () => go(state.net, name, null) },
        `${name} · ${l.channels}`);
      if (name === state.layer) b.classList.add("atlas-current");
      layers.append(b);
    }
    return el("div", { class: "atlas-controls" }, nets, layers);
  }

  function summary(m) {
    const few = m.num_images < 9
      ? ` Only ${m.num_images} images: each unit has at most ` +
        `${m.num_images} entries, not nine.`
      : "";
    return el("p", { class: "atlas-summary" },
      `${state.net.title}: the top ${m.k} of ${m.num_images.toLocaleString()}` +
      ` images (${m.dataset}, ${m.world} world) for every unit.${few}`);
  }

  function go(net, layer, channel) {
    if (layer !== null) {
      location.hash = permalink(net, layer, channel);
      return;
    }
    manifestOf(net).then(({ m }) => {
      location.hash = permalink(net, Object.keys(m.layers)[0], null);
    });
  }

  function grid() {
    const L = state.manifest.layers[state.layer];
    const { cell, columns, file } = L.thumbnails;
    const sheet = new URL(file, state.url).href;
    const box = el("div", { class: "atlas-grid" });
    for (const u of L.units) {
      const c = u.channel;
      const thumb = u.top.length
        ? el("span", { class: "atlas-thumb", style: {
            width: `${cell[1]}px`, height: `${cell[0]}px`,
            backgroundImage: `url("${sheet}")`,
            backgroundPosition: `-${(c % columns) * cell[1]}px ` +
              `-${Math.floor(c / columns) * cell[0]}px` } })
        : el("span", { class: "atlas-dead", style: {
            width: `${cell[1]}px`, height: `${cell[0]}px` } },
            "never fires");
      const b = el("a", { class: "atlas-cell", href:
        permalink(state.net, state.layer, c),
        title: `${state.layer} unit ${c}: ` + (u.top.length
          ? `max ${fmt(u.max)}, fires in ${pct(u.active_share)}`
          : `never fires (0 of ${state.manifest.num_images} images)`) },
        thumb, el("span", { class: "atlas-label" }, String(c)));
      if (state.unit && c === state.unit.channel) {
        b.classList.add("atlas-current");
      }
      box.append(b);
    }
    return el("div", {},
      el("h2", {}, `${state.layer}: ${L.channels} units`),
      el("p", { class: "atlas-hint" },
        "Each cell: the unit's strongest projection (left) and its patch " +
        "(right). Open one for all its entries; ← and → step through " +
        "the units."),
      box);
  }

  function strip(file, n, tile, label) {
    const src = new URL(file, state.url).href;
    const row = el("div", { class: "atlas-tiles", "aria-label": label });
    for (let j = 0; j < n; j++) {
      const img = el("img", { src, alt: `${label} ${j + 1}`,
        style: { width: `${n * 100}%`, left: `-${j * 100}%` } });
      if (tile[1] < 32) img.classList.add("atlas-pixelated");
      const t = state.unit.top[j];
      row.append(el("div", { class: "atlas-item" },
        el("div", { class: "atlas-tile" }, img),
        el("div", { class: "atlas-cap", title: `validation image ` +
          `${t.index}, position (${t.position.join(", ")}), ` +
          `activation ${t.value}` }, caption(t, j))));
    }
    return el("div", { class: "atlas-panel" }, el("h4", {}, label), row);
  }

  function caption(t, j) {
    const name = state.manifest.classes[t.label];
    return el("span", {}, `${j + 1}. ${fmt(t.value)}`, el("br"), name);
  }

  function facts(u, L) {
    const m = state.manifest;
    const rf = L.receptive_field;
    const rows = [
      ["largest activation", fmt(u.max)],
      ["fires in", `${u.active.toLocaleString()} of ` +
        `${m.num_images.toLocaleString()} images (${pct(u.active_share)})`],
      ["receptive field", `${rf[0]} px box, stride ${rf[1]}, ` +
        `padding ${rf[2]}; map ${L.map[0]}×${L.map[1]}`],
    ];
    if (u.top.length) {
      const chance = m.chance_purity[u.top.length - 1];
      rows.push(["classes of its " + u.top.length, u.classes
        .map((c) => `${c.count} × ${m.classes[c.label]}`).join(", ")]);
      rows.push(["purity", `${pct(u.purity)} (chance: ${pct(chance)})`]);
    }
    const dl = el("dl", { class: "atlas-facts" });
    for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v));
    return dl;
  }

  function detail(u) {
    const L = state.manifest.layers[state.layer];
    const c = u.channel;
    const step = (d) => go(state.net, state.layer,
      (c + d + L.channels) % L.channels);
    const title = `${state.net.title} · ${state.layer} · unit ${c}`;
    const head = el("div", { class: "atlas-head" },
      el("h2", { id: "atlas-unit" }, title),
      el("button", { type: "button", onclick: () => step(-1) }, "← previous"),
      el("button", { type: "button", onclick: () => step(1) }, "next →"),
      el("a", { href: permalink(state.net, state.layer, c) }, "permalink"));
    const body = el("div", { class: "atlas-detail" }, head, facts(u, L));
    if (u.filter) {
      body.append(el("div", { class: "atlas-filter" },
        el("img", { src: new URL(u.filter, state.url).href,
          alt: `filter of unit ${c}`, class: "atlas-pixelated" }),
        el("span", {}, "its filter (zero is grey)")));
    }
    if (!u.top.length) {
      body.append(el("p", { class: "atlas-error" },
        `This unit never fires: its activation is zero at every position ` +
        `of all ${state.manifest.num_images.toLocaleString()} images, so it ` +
        `has no top ${state.manifest.k} to show.`));
      return body;
    }
    if (u.top.length < state.manifest.k) {
      body.append(el("p", { class: "atlas-note" },
        `It fires in only ${u.top.length} images: ${u.top.length} entries.`));
    }
    body.append(el("div", { class: "atlas-pair" },
      strip(u.projections, u.top.length, L.tile, "projections (deconvnet)"),
      strip(u.patches, u.top.length, L.tile, "patches (receptive field)")));
    return body;
  }

  document.addEventListener("keydown", (e) => {
    if (!state.unit || e.target.closest("input, select, textarea")) return;
    const L = state.manifest.layers[state.layer];
    const d = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (!d) return;
    e.preventDefault();
    const c = (state.unit.channel + d + L.channels) % L.channels;
    go(state.net, state.layer, c);
  });

  window.addEventListener("hashchange", route);
  fetchJSON(base)
    .then((index) => { state.index = index; return route(); })
    .catch((err) => root.replaceChildren(el("p", { class: "atlas-error" },
      `The atlas could not be loaded (${err.message}). It is built by ` +
      "jupyter-book build with the zfcourse.site extension.")));
})();
