// The ConvViz tab: for a kind, run and layer, the probe images down and the epochs across.
//
// TensorBoard loads this module in an iframe whose base URL is the plugin's route
// (data/plugin/convviz/) and calls render(). Plain JavaScript, no build step: the iframe's
// content security policy allows only same-origin scripts and fetches. Every URL it asks for
// is relative to that base, so the tab works wherever TensorBoard is served (--path_prefix,
// Jupyter's and Colab's proxies). Names coming from the logs (runs, layers, tags) are only
// ever set as textContent or attribute values.

// What each kind is called and how its pictures are laid out comes from the server's
// registry (route "kinds", keras_convviz/kinds.py); this file keeps no list of kinds.
const PLAY_MS = 700;
const CELL = { min: 40, max: 256, step: 8, initial: 80 }; // px
const SERIES_COLORS = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf",
];

const state = {
  kinds: new Map(), // run name of a kind -> {run, label, layout, ...}
  layouts: {}, // the layouts' names: {LAYER_AND_PROBE, PROBE, LAYER, NO_PICTURES}
  runs: [], // the index: [{run, group, kind, layers: [{layer, rows}]}]
  kind: null,
  run: null,
  layer: null,
  compare: null, // another run of the same kind, drawn under each row; or null
  sheet: null, // {run, rows: [{tag, label, steps}], steps, group_steps}
  compareSheet: null, // the compared run's sheet of the same layer, when it has one
  steps: [], // the epochs (steps) shown: the sheet's and the compared sheet's
  missed: null, // the epoch (step) asked for that this kind has no picture at
  scalars: null,
  compareScalars: null,
  alerts: null,
  outline: false, // the regions' outlines drawn over the NOW pictures
  outlines: new Map(), // run -> {probe index: SVG path in its panel's pixels}
  index: 0, // position of the current epoch in state.steps
  cell: CELL.initial,
  notices: [], // what a link asked for that is not here, and what is shown instead
  timer: null,
  request: 0, // the latest sheet request; older answers are dropped
};

const ui = {};
let observer = null;

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function query(route, params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) search.set(key, String(value));
  }
  return `${route}?${search.toString()}`;
}

async function getJson(route, params = {}) {
  const response = await fetch(query(route, params));
  if (!response.ok) {
    const error = new Error(`${route}: ${response.status} ${await response.text()}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function imageUrl(run, tag, step) {
  // `run` is the loaded sheet's: a selector may already name another while its sheet loads.
  return query("image", { run, tag, step });
}

// Epochs as people read them: Keras prints "Epoch 1/N" for TensorBoard's step 0.

function epochName(step) {
  return `epoch ${step + 1}`;
}

function epochAndStep(step) {
  return `${epochName(step)} (step ${step})`;
}

function currentStep() {
  return state.steps.length ? state.steps[state.index] : null;
}

function groupName(run) {
  const entry = state.runs.find((r) => r.run === run);
  return entry ? entry.group || "." : run;
}

function kindLabel(kind) {
  const known = state.kinds.get(kind);
  return known ? known.label : kind;
}

function onePerLayer(kind) {
  const known = state.kinds.get(kind);
  // Rows are layers, not probe images.
  return known !== undefined && known.layout === state.layouts.LAYER;
}

function layerLabel(layer) {
  if (layer !== null) return layer;
  return onePerLayer(state.kind) ? "every layer" : "(no layer)";
}

function setStatus(text) {
  ui.status.textContent = text;
}

// Selectors.

function fillSelect(select, options, value) {
  select.replaceChildren();
  for (const [optionValue, label] of options) {
    const option = el("option", {}, label);
    option.value = optionValue;
    select.append(option);
  }
  select.value = value;
  select.disabled = options.length < 2;
}

function choose(wanted = {}) {
  // What `wanted` names where it is there, else the first choice. A key absent from
  // `wanted` keeps the current value; `undefined` asks for the first choice.
  const pick = (key) => (key in wanted ? wanted[key] : state[key]);
  let [kind, run, layer, compare] = ["kind", "run", "layer", "compare"].map(pick);
  const kinds = [...new Set(state.runs.map((r) => r.kind))];
  if (!kinds.includes(kind)) kind = kinds[0] ?? null;
  const runs = state.runs.filter((r) => r.kind === kind);
  // Keep the group (experiment) when switching kind.
  const current = state.runs.find((r) => r.run === run);
  let chosen = runs.find((r) => r.run === run);
  if (!chosen && current) chosen = runs.find((r) => r.group === current.group);
  chosen = chosen || runs[0] || null;
  const layers = chosen ? chosen.layers.map((l) => l.layer) : [];
  if (!layers.includes(layer)) layer = layers.length ? layers[0] : null;
  state.kind = kind;
  state.run = chosen ? chosen.run : null;
  state.layer = layer;
  fillSelect(ui.kind, kinds.map((k) => [k, kindLabel(k)]), kind);
  fillSelect(ui.run, runs.map((r) => [r.run, r.group || "."]), state.run);
  fillSelect(ui.layer, layers.map((l) => [l === null ? "" : l, layerLabel(l)]), layer ?? "");
  // The compared run: the same kind in another experiment; a new kind keeps its experiment.
  const others = runs.filter((r) => r.run !== state.run);
  let against = others.find((r) => r.run === compare);
  const was = state.runs.find((r) => r.run === compare);
  if (!against && was) against = others.find((r) => r.group === was.group);
  state.compare = against ? against.run : null;
  const choices = others.map((r) => [r.run, r.group || "."]);
  fillSelect(ui.compare, [["", "none"], ...choices], state.compare ?? "");
}

// The view in the link.
//
// TensorBoard rebuilds this frame on every reload, so the frame's own URL keeps nothing.
// TensorBoard keeps its state in its page's fragment, "#<tab>&key=value&..." (tf_storage),
// leaves keys it does not know there when it writes its own, and hands a plugin those named
// "p.<plugin>.<key>" (plugin_lib's getURLPluginData). So the view goes there, into the page
// that holds this frame (TensorBoard's, same origin): a reload, the back button and a copied
// link of TensorBoard's page reopen it. Under Jupyter or Colab that page is itself in a
// frame whose URL nobody sees; then the view lasts as long as the page.

const LINK_PREFIX = "p.convviz.";
const LINK_KEYS = ["kind", "run", "layer", "epoch", "cell", "compare", "outline"];
const LINK_REST_MS = 300;
let linkTimer = null;
let linkWritten = null; // the fragment this tab wrote last

function linkWindow() {
  try {
    void window.parent.location.hash; // a parent of another origin throws
    return window.parent;
  } catch {
    return window;
  }
}

function fragmentParts(hash) {
  return hash.replace(/^#/, "").split("&").filter((part) => part !== "");
}

function decoded(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

function isOurs(part) {
  const key = decoded(part.split("=")[0]);
  return key !== null && key.startsWith(LINK_PREFIX);
}

function readLink() {
  // {kind, run, layer, epoch, cell, compare, outline}: the strings the link holds (tf_storage's
  // format: "key=value", both URI-encoded).
  const view = {};
  for (const part of fragmentParts(linkWindow().location.hash)) {
    const pair = part.split("=");
    if (pair.length !== 2 || !isOurs(part)) continue;
    const key = decoded(pair[0]).slice(LINK_PREFIX.length);
    const value = decoded(pair[1]);
    if (LINK_KEYS.includes(key) && value !== null) view[key] = value;
  }
  return view;
}

function viewOfState() {
  const step = currentStep();
  return {
    kind: state.kind,
    run: state.run,
    layer: state.layer ?? "",
    epoch: step === null ? null : String(step + 1),
    cell: String(state.cell),
    compare: state.compare,
    outline: state.outline ? "on" : null,
  };
}

function sameView(a, b) {
  return LINK_KEYS.every((key) => (a[key] ?? null) === (b[key] ?? null));
}

function fragmentOf(view) {
  // TensorBoard's own parts stay as they are; without a tab, the link names this one.
  const parts = fragmentParts(linkWindow().location.hash).filter((part) => !isOurs(part));
  if (!parts.some((part) => !part.includes("="))) parts.unshift("convviz");
  for (const key of LINK_KEYS) {
    const value = view[key];
    if (value === null || value === undefined) continue;
    parts.push(`${encodeURIComponent(LINK_PREFIX + key)}=${encodeURIComponent(value)}`);
  }
  return `#${parts.join("&")}`;
}

function saveView({ push = false } = {}) {
  // A new kind, run, layer or comparison is a new history entry (the back button returns
  // to the one before); scrubbing epochs or sizing cells replaces the entry once it rests.
  clearTimeout(linkTimer);
  const write = () => {
    if (!state.run) return;
    const host = linkWindow();
    const hash = fragmentOf(viewOfState());
    if (hash === host.location.hash) return;
    linkWritten = hash;
    if (push) host.location.hash = hash;
    else host.location.replace(`${host.location.href.split("#")[0]}${hash}`);
  };
  if (push) write();
  else linkTimer = setTimeout(write, LINK_REST_MS);
}

function chooseView(view) {
  // The view a link names; what is not here falls back to the first choice, with a notice.
  const notices = [];
  const layer = "layer" in view ? view.layer || null : undefined;
  // A run names its kind (a link cut short by hand may name the run alone).
  const named = state.runs.find((r) => r.run === view.run);
  const kind = view.kind ?? (named ? named.kind : undefined);
  choose({ kind, run: view.run, layer, compare: view.compare ?? null });
  const check = (what, asked, got, shown) => {
    if (asked !== undefined && asked !== got) {
      notices.push(`The link's ${what} “${asked}” is not here: showing ${shown}.`);
    }
  };
  check("kind", view.kind, state.kind, kindLabel(state.kind));
  check("run", view.run, state.run, groupName(state.run));
  check("layer", view.layer, state.layer ?? "", layerLabel(state.layer));
  const comparing = state.compare ? groupName(state.compare) : "no comparison";
  check("comparison run", view.compare || undefined, state.compare ?? undefined, comparing);
  if ("cell" in view) {
    const cell = Number(view.cell);
    const fits = Number.isInteger(cell) && cell >= CELL.min && cell <= CELL.max;
    state.cell = fits ? cell : CELL.initial;
    ui.size.value = String(state.cell);
    check("cell size", view.cell, fits ? view.cell : "", `${state.cell} px`);
  }
  // Off unless the link says "on": the pictures as written are the default.
  state.outline = view.outline === "on";
  check("outline", view.outline, state.outline ? "on" : "off", "no outline");
  drawOutlineToggle();
  state.notices = notices;
  return view.epoch;
}

async function openLink(view) {
  // A link followed: the back button, an edited address, a reload.
  const epoch = chooseView(view);
  await loadSheet({ epoch });
  saveView(); // what is shown, where the link named something that is not here
}

function onLinkChange() {
  const host = linkWindow();
  if (host.location.hash === linkWritten) return; // this tab's own write
  linkWritten = host.location.hash;
  const view = readLink();
  if (sameView(view, viewOfState())) return;
  openLink(view).catch((e) => setStatus(`Could not load: ${e.message}`));
}

// Loading.

async function loadKinds() {
  const data = await getJson("kinds");
  state.kinds = new Map(data.kinds.map((kind) => [kind.run, kind]));
  state.layouts = data.layouts;
}

async function loadIndex() {
  const data = await getJson("index");
  state.runs = data.runs;
}

function missing(error) {
  // The compared run may lack the layer (another model): no rows, and a notice.
  if (error.status === 404) return null;
  throw error;
}

async function loadSheet({ epoch } = {}) {
  // `epoch`: the one a link names (a string, 1-based); else the current one is kept.
  stop();
  if (!state.run) {
    Object.assign(state, { sheet: null, compareSheet: null, steps: [], scalars: null });
    Object.assign(state, { compareScalars: null, alerts: null });
    drawAll();
    setStatus("No keras_convviz pictures in this log directory yet.");
    return;
  }
  const previousStep = currentStep();
  const request = ++state.request;
  const params = { run: state.run, layer: state.layer };
  const against = state.compare ? { run: state.compare, layer: state.layer } : null;
  // The regions' outlines of kinds drawn per probe image (`regions=`): none elsewhere.
  const regions = (view) =>
    onePerLayer(state.kind) ? null : getJson("regions", view).catch(missing);
  const [sheet, scalars, alerts, compareSheet, compareScalars, ownRegions, theirRegions] =
    await Promise.all([
      getJson("sheet", params),
      getJson("scalars", params),
      getJson("alerts", params),
      against ? getJson("sheet", against).catch(missing) : null,
      against ? getJson("scalars", against).catch(missing) : null,
      regions(params),
      against ? regions(against) : null,
    ]);
  if (request !== state.request) return; // a later choice has its own request in flight
  Object.assign(state, { sheet, scalars, alerts, compareSheet, compareScalars });
  state.outlines = new Map();
  for (const [run, data] of [[state.run, ownRegions], [state.compare, theirRegions]]) {
    if (data && Object.keys(data.outlines).length) state.outlines.set(run, data.outlines);
  }
  if (against && !compareSheet) {
    const layer = layerLabel(state.layer);
    state.notices.push(`${groupName(state.compare)} has no ${layer}: nothing to compare.`);
  }
  state.steps = [...new Set([...sheet.steps, ...(compareSheet ? compareSheet.steps : [])])];
  state.steps.sort((a, b) => a - b);
  const steps = state.steps;
  const last = Math.max(0, steps.length - 1);
  state.missed = null;
  if (epoch !== undefined) {
    const at = steps.indexOf(Number(epoch) - 1);
    state.index = at >= 0 ? at : last;
    if (at < 0 && steps.length) {
      state.notices.push(`The link's epoch “${epoch}” is not here: showing ` +
        `${epochName(steps[last])}.`);
    }
  } else if (steps.indexOf(previousStep) >= 0) {
    state.index = steps.indexOf(previousStep);
  } else if (previousStep !== null && steps.length) {
    // A kind written at fewer epochs (ConvViz's budget, its own freq): the nearest epoch
    // at or before the one asked for, and say so (drawEpochs), rather than jump to the last.
    const before = steps.filter((s) => s <= previousStep).length;
    state.index = Math.max(0, before - 1);
    state.missed = previousStep;
  } else {
    state.index = last;
  }
  drawAll();
  setStatus("");
}

async function refresh(view = null) {
  // `view`: what a link names, when the tab opens; else the current choices stay.
  try {
    // The registry is the server's: read once per page.
    if (!state.kinds.size) await loadKinds();
    await loadIndex();
    diagnosis.run = null; // new alerts may have fired since
    if (view) {
      await openLink(view);
    } else {
      choose();
      await loadSheet();
    }
  } catch (error) {
    setStatus(`Could not load: ${error.message}`);
  }
}

// Drawing.

function lazyImage(run, tag, step, alt) {
  const attrs = { alt, title: alt, "data-run": run, "data-tag": tag, "data-step": String(step) };
  const img = el("img", { ...attrs, decoding: "async" });
  img.dataset.src = imageUrl(run, tag, step);
  observer.observe(img);
  return img;
}

function sheetRows() {
  // [{row, run, compared}] as drawn: each row, and the compared run's same row under it
  // (no pictures where that run has no such row: fewer probe images).
  const out = [];
  const compared = state.compareSheet;
  const theirs = new Map((compared ? compared.rows : []).map((row) => [row.tag, row]));
  for (const row of state.sheet.rows) {
    out.push({ row, run: state.sheet.run, compared: false });
    if (compared) {
      const other = theirs.get(row.tag) || { ...row, steps: [] };
      out.push({ row: other, run: compared.run, compared: true });
    }
  }
  return out;
}

function rowHeader(tag, { row, run, compared }) {
  // With a comparison, each row says whose it is.
  const cell = el(tag, { class: compared ? "rowlabel compared" : "rowlabel" }, row.label);
  if (state.compareSheet) cell.append(el("span", { class: "runname" }, groupName(run)));
  return cell;
}

function cellSize(row) {
  // Every picture gets the area of a cell x cell square: wide Grad-CAM panels and tall
  // filter grids stay readable at one setting.
  const aspect = row.width && row.height ? row.width / row.height : 1;
  const width = Math.round(state.cell * Math.sqrt(aspect));
  return { width, height: Math.round(width / aspect) };
}

function visibleColumns(steps) {
  // Thin out epochs that do not fit: evenly spaced, the first and last always kept.
  const width = ui.sheet.clientWidth || window.innerWidth;
  const cell = Math.max(...state.sheet.rows.map((row) => cellSize(row).width));
  const fit = Math.max(2, Math.floor((width - 80) / (cell + 4)));
  if (steps.length <= fit) return steps.map((_, i) => i);
  const picked = new Set();
  for (let k = 0; k < fit; k++) picked.add(Math.round((k * (steps.length - 1)) / (fit - 1)));
  return [...picked].sort((a, b) => a - b);
}

function drawSheet() {
  observer.disconnect();
  ui.sheet.replaceChildren();
  ui.thinned.textContent = "";
  const steps = state.steps;
  if (!state.sheet || !steps.length) return;
  const columns = visibleColumns(steps);
  const table = el("table", { class: state.compareSheet ? "sheet comparing" : "sheet" });
  const head = el("tr");
  head.append(el("th", { class: "rowlabel" }, onePerLayer(state.kind) ? "layer" : "probe"));
  for (const i of columns) {
    const th = el("th", { class: "epoch", "data-index": String(i) }, epochName(steps[i]));
    th.title = `step ${steps[i]}`; // TensorBoard's own axis
    th.addEventListener("click", () => setIndex(i));
    head.append(th);
  }
  table.append(head);
  for (const entry of sheetRows()) {
    const { row, run, compared } = entry;
    const tr = el("tr", { class: compared ? "compared" : "", "data-run": run });
    tr.append(rowHeader("th", entry));
    const present = new Set(row.steps);
    const size = cellSize(row);
    for (const i of columns) {
      const step = steps[i];
      const td = el("td", { "data-index": String(i) });
      if (present.has(step)) {
        const who = state.compareSheet ? `${groupName(run)}, ` : "";
        const img = lazyImage(run, row.tag, step, `${who}${row.label}, ${epochAndStep(step)}`);
        img.style.width = `${size.width}px`;
        img.style.aspectRatio = `${size.width} / ${size.height}`;
        const box = outlineOf(row, run);
        if (box) {
          // The region over every epoch's picture: where the evidence went, across epochs.
          const picture = el("div", { class: "picture" });
          picture.append(img, box);
          td.append(picture);
        } else {
          td.append(img);
        }
      }
      td.addEventListener("click", () => setIndex(i));
      tr.append(td);
    }
    table.append(tr);
  }
  ui.sheet.append(table);
  if (columns.length < steps.length) {
    ui.thinned.textContent =
      `showing ${columns.length} of ${steps.length} epochs; widen or shrink the cells for more`;
  }
}

function nowWidth(rows) {
  // One row when the pictures fit at 1.5 cells or more (up to 3 cells); else they wrap.
  const cell = Math.max(...rows.map((row) => cellSize(row).width));
  const width = ui.now.clientWidth || window.innerWidth;
  const fit = Math.floor((width - 10 * (rows.length - 1)) / Math.max(1, rows.length));
  return Math.round(Math.max(1.5 * cell, Math.min(3 * cell, fit)));
}

function drawNow() {
  const sheet = state.sheet;
  if (!sheet || !state.steps.length) {
    ui.now.replaceChildren();
    return;
  }
  const step = currentStep();
  const width = `${nowWidth(sheet.rows)}px`;
  // One figure per row; with a comparison, the compared run's picture under it.
  const entries = sheetRows();
  const per = state.compareSheet ? 2 : 1;
  const groups = sheet.rows.map((_, i) => entries.slice(i * per, (i + 1) * per));
  const key = (i) => groups[i].map((entry) => entry.run).join("\n");
  const figures = [...ui.now.children];
  const same =
    figures.length === sheet.rows.length &&
    figures.every(
      (f, i) => f.dataset.tag === sheet.rows[i].tag && f.dataset.runs === key(i) &&
        f.style.width === width,
    );
  if (!same) {
    // Build the figures once per sheet; scrubbing then only swaps sources (no flicker).
    ui.now.replaceChildren();
    sheet.rows.forEach((row, i) => {
      const figure = el("figure", { "data-tag": row.tag, "data-runs": key(i) });
      figure.style.width = width;
      for (const { run, compared } of groups[i]) {
        const picture = el("div", { class: compared ? "picture compared" : "picture" });
        picture.append(el("img", { "data-tag": row.tag, "data-run": run }));
        picture.append(el("div", { class: "missing" }, "no picture"));
        if (state.compareSheet) picture.append(el("div", { class: "runname" }, groupName(run)));
        figure.append(picture);
      }
      figure.append(el("figcaption", {}, row.label));
      ui.now.append(figure);
    });
  }
  const pictures = ui.now.querySelectorAll(".picture");
  entries.forEach(({ row, run }, i) => {
    const img = pictures[i].querySelector("img");
    const present = row.steps.includes(step);
    img.hidden = !present;
    pictures[i].querySelector(".missing").hidden = present;
    if (!present) return;
    img.alt = `${row.label}, ${epochAndStep(step)}`;
    img.dataset.step = String(step);
    img.src = imageUrl(run, row.tag, step);
  });
  drawOutlines(entries, pictures, step);
}

// The regions' outlines (`regions=`): the server draws each probe image's region as a path
// in its panel's pixels (route "regions"), over the image and the overlay; an SVG of the
// panel's size over the picture holds it, so it scales with the cell size. Drawn over the
// NOW pictures and over every epoch's in the sheet.

function drawOutlineToggle() {
  const available = state.outlines.size > 0;
  ui.outline.hidden = !available;
  ui.outline.setAttribute("aria-pressed", String(state.outline));
  ui.outline.classList.toggle("on", state.outline);
}

function outlineOf(row, run) {
  // The SVG of a row's region in its run's panel, or null (outlines off, or none).
  const path = (state.outlines.get(run) || {})[String(row.probe)];
  if (!state.outline || !path || !row.width || !row.height) return null;
  const box = svg("svg", {
    class: "region",
    viewBox: `0 0 ${row.width} ${row.height}`,
    preserveAspectRatio: "none",
    "aria-hidden": "true",
  });
  // A dark line under a light one: the outline reads over any image and colour map.
  box.append(svg("path", { d: path, class: "halo" }), svg("path", { d: path, class: "line" }));
  return box;
}

function drawOutlines(entries, pictures, step) {
  drawOutlineToggle();
  entries.forEach(({ row, run }, i) => {
    const picture = pictures[i];
    for (const old of picture.querySelectorAll("svg.region")) old.remove();
    const box = outlineOf(row, run);
    if (box && row.steps.includes(step)) picture.append(box);
  });
}

function toggleOutline() {
  state.outline = !state.outline;
  drawNow();
  drawSheet();
  saveView({ push: true });
}

function epochList(steps) {
  // Epochs as the tab counts them (step + 1), consecutive ones as ranges: "1-3, 6, 9".
  const parts = [];
  let start = null;
  steps.forEach((step, i) => {
    if (start === null) start = step;
    if (i + 1 === steps.length || steps[i + 1] !== step + 1) {
      parts.push(start === step ? `${start + 1}` : `${start + 1}-${step + 1}`);
      start = null;
    }
  });
  return parts.join(", ");
}

function drawEpochs() {
  // A kind with pictures at fewer epochs than its experiment's others says at which.
  const sheet = state.sheet;
  const all = sheet && sheet.group_steps ? sheet.group_steps : [];
  if (!sheet || !sheet.steps.length || sheet.steps.length >= all.length) {
    ui.epochs.hidden = true;
    ui.epochs.textContent = "";
    return;
  }
  const label = kindLabel(state.kind);
  const known = state.kinds.get(state.kind);
  const why = known && known.costly
    ? "a costly kind, run less often by ConvViz's budget (or its own freq)"
    : "run less often (its own freq)";
  let text = `${label} exists at epochs ${epochList(sheet.steps)} of the ${all.length} ` +
    `epochs with snapshots (${epochList(all)}): ${why}; the other epochs have no picture of it.`;
  if (state.missed !== null) {
    text += ` Epoch ${state.missed + 1} has none: showing ${epochName(currentStep())}.`;
  }
  ui.epochs.textContent = text;
  ui.epochs.hidden = false;
}

function drawPosition() {
  const n = state.steps.length;
  ui.slider.max = String(Math.max(0, n - 1));
  ui.slider.value = String(state.index);
  ui.slider.disabled = n < 2;
  ui.play.disabled = n < 2;
  ui.epoch.textContent = n ? `${epochAndStep(currentStep())} · ${state.index + 1}/${n}` : "";
  // A thinned-out sheet may not show the current epoch: mark the nearest column shown.
  const headers = ui.sheet.querySelectorAll("th[data-index]");
  const shown = [...headers].map((node) => Number(node.dataset.index));
  const nearest = shown.reduce(
    (best, i) => (Math.abs(i - state.index) < Math.abs(best - state.index) ? i : best),
    shown[0],
  );
  for (const node of ui.sheet.querySelectorAll("[data-index]")) {
    const index = Number(node.dataset.index);
    node.classList.toggle("current", index === state.index);
    node.classList.toggle("near", index === nearest && index !== state.index);
  }
  for (const line of ui.scalars.querySelectorAll("line.cursor")) {
    const x = line.__x ? line.__x(n ? currentStep() : 0) : 0;
    line.setAttribute("x1", x);
    line.setAttribute("x2", x);
  }
}

function scalarPlots() {
  // One plot per quantity; with a comparison, the compared run's series in the same plot.
  const plots = new Map();
  const add = (data, compared) => {
    for (const plot of data ? data.plots : []) {
      if (!plots.has(plot.quantity)) plots.set(plot.quantity, []);
      plots.get(plot.quantity).push(...plot.series.map((s) => ({ ...s, compared })));
    }
  };
  add(state.scalars, false);
  if (state.compareSheet) add(state.compareScalars, true);
  return [...plots].map(([quantity, series]) => ({ quantity, series }));
}

function drawScalars() {
  ui.scalars.replaceChildren();
  const plots = scalarPlots();
  if (!plots.length) {
    ui.scalars.append(el("p", { class: "hint" }, "No scalars for this layer."));
    return;
  }
  if (state.compareSheet) {
    // Whose line is whose: this run's solid, the compared run's dashed, a color per row.
    const key = el("div", { class: "legend runs" });
    key.append(el("span", { class: "solid" }, groupName(state.sheet.run)));
    key.append(el("span", { class: "dashed" }, groupName(state.compareSheet.run)));
    ui.scalars.append(key);
  }
  const W = 240;
  const H = 96;
  const P = 6;
  for (const plot of plots) {
    const points = plot.series.flatMap((s) => s.points).filter((p) => p[1] !== null);
    const box = el("div", { class: "plot" });
    box.append(el("h3", {}, plot.quantity));
    if (!points.length) {
      box.append(el("p", { class: "hint" }, "no finite values"));
      ui.scalars.append(box);
      continue;
    }
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
    const sx = (x) => P + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * P);
    const sy = (y) => H - P - ((y - y0) / (y1 - y0)) * (H - 2 * P);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
    chart.append(svg("rect", { class: "frame", x: 0.5, y: 0.5, width: W - 1, height: H - 1 }));
    const labels = [...new Set(plot.series.map((s) => s.label))];
    const color = (series) => SERIES_COLORS[labels.indexOf(series.label) % SERIES_COLORS.length];
    plot.series.forEach((series) => {
      const d = [];
      let pen = "M";
      for (const [x, y] of series.points) {
        if (y === null) {
          pen = "M";
          continue;
        }
        d.push(`${pen}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
        pen = "L";
      }
      // A point with no neighbour draws no line (a costly score thinned by the budget):
      // a dot shows it.
      d.forEach((move, i) => {
        const alone = move[0] === "M" && (i + 1 === d.length || d[i + 1][0] === "M");
        if (!alone) return;
        const [cx, cy] = move.slice(1).split(",");
        chart.append(svg("circle", { class: "dot", cx, cy, r: 2.5, fill: color(series) }));
      });
      const path = svg("path", { d: d.join(" "), stroke: color(series) });
      const classes = ["series", series.compared ? "compared" : "", series.floor ? "floor" : ""];
      path.setAttribute("class", classes.filter(Boolean).join(" "));
      const title = svg("title");
      const run = state.compareSheet
        ? `${groupName(series.compared ? state.compareSheet.run : state.sheet.run)}: `
        : "";
      title.textContent = run + (series.label || plot.quantity);
      path.append(title);
      chart.append(path);
    });
    const cursor = svg("line", { class: "cursor", y1: 0, y2: H });
    cursor.__x = sx;
    chart.append(cursor);
    box.append(chart);
    const range = el("div", { class: "range" });
    range.append(el("span", {}, `min ${format(Math.min(...ys))}`));
    range.append(el("span", {}, `max ${format(Math.max(...ys))}`));
    box.append(range);
    if (labels.length > 1) {
      const legend = el("div", { class: "legend" });
      const floors = new Set(plot.series.filter((s) => s.floor).map((s) => s.label));
      labels.forEach((label, i) => {
        const item = el("span", { class: floors.has(label) ? "floor" : "" }, label);
        item.style.setProperty("--swatch", SERIES_COLORS[i % SERIES_COLORS.length]);
        legend.append(item);
      });
      box.append(legend);
    }
    ui.scalars.append(box);
  }
}

function drawAlerts() {
  ui.alerts.replaceChildren();
  const alerts = state.alerts ? state.alerts.alerts : [];
  if (!alerts.length) {
    ui.alerts.append(el("p", { class: "hint" }, "None for this layer."));
    return;
  }
  const list = el("ul", { class: "alerts" });
  for (const alert of alerts) {
    const item = el("li");
    const since = alert.since_epoch === alert.epoch ? "" : ` (since epoch ${alert.since_epoch})`;
    item.append(el("strong", {}, `epoch ${alert.epoch}${since}: `));
    item.append(document.createTextNode(alert.title + (alert.layer ? "" : " (model)")));
    item.title = alert.text; // the Markdown: value, meaning, what to try, evidence
    list.append(item);
  }
  ui.alerts.append(list);
}

function format(value) {
  const a = Math.abs(value);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? value.toExponential(2) : String(+value.toFixed(4));
}

function drawNotices() {
  ui.notice.textContent = state.notices.join(" ");
  ui.notice.hidden = !state.notices.length;
}

// The diagnosis: what is wrong, since when, where and what to try, one line per root cause
// of the current experiment's alerts (route "diagnosis", keras_convviz/diagnosis.py). A
// line's button shows its evidence: the kind and layer whose pictures and numbers show it.

const diagnosis = { run: null, lines: null };

function buildDiagnosis() {
  ui.diagnosis = el("section", { id: "diagnosis", class: "diagnosis", "aria-live": "polite" });
  return ui.diagnosis;
}

async function drawDiagnosis(force = false) {
  const alertsRun = state.run; // the route reads the alerts of this run's experiment
  const group = (state.runs.find((r) => r.run === alertsRun) || {}).group;
  const same = diagnosis.run !== null && diagnosis.group === group;
  if (!alertsRun || (same && !force)) return;
  diagnosis.run = alertsRun;
  diagnosis.group = group;
  const data = await getJson("diagnosis", { run: alertsRun });
  if (diagnosis.run !== alertsRun) return; // another experiment was chosen meanwhile
  diagnosis.lines = data.lines;
  ui.diagnosis.replaceChildren(el("h2", {}, "Diagnosis"));
  ui.diagnosis.classList.toggle("off", !data.watched);
  if (!data.lines.length && !data.watched) {
    // No rule watched this training (`ConvViz(alerts=False)`): no alert says nothing.
    const text = "Alerts were off for this training: nothing was checked.";
    ui.diagnosis.append(el("p", { class: "diagnosis-off" }, text));
    return;
  }
  if (!data.lines.length) {
    ui.diagnosis.append(el("p", { class: "diagnosis-ok" }, "Nothing wrong: no alert fired."));
    return;
  }
  const list = el("ol", { class: "diagnosis-lines" });
  data.lines.forEach((line) => list.append(diagnosisLine(line)));
  ui.diagnosis.append(list);
}

function withCode(node, text) {
  // A rule's text: its `code` spans as <code>, the rest as text.
  text.split("`").forEach((part, i) => {
    if (part) node.append(i % 2 ? el("code", {}, part) : document.createTextNode(part));
  });
  return node;
}

function diagnosisLine(line) {
  const item = el("li");
  const since = line.since_epoch === line.epoch ? "" : `, seen at epoch ${line.epoch}`;
  const show = el("button", { type: "button", class: "evidence-link" });
  show.append(el("strong", {}, line.title));
  show.title = `show the evidence: ${line.evidence.replaceAll("`", "")}`;
  show.addEventListener("click", () => showEvidence(line).catch((e) => setStatus(e.message)));
  item.append(show);
  withCode(item, ` since epoch ${line.since_epoch}${since}, in ${line.where}`);
  item.append(withCode(el("div", { class: "try" }, "Try: "), line.advice));
  item.append(withCode(el("div", { class: "why" }), line.meaning));
  if (line.folded.length) {
    const folded = el("details", { class: "folded" });
    const n = line.folded.length;
    folded.append(el("summary", {}, `${n} more alert${n > 1 ? "s" : ""} follow from it`));
    const sub = el("ul");
    for (const f of line.folded) {
      sub.append(withCode(el("li"), `epoch ${f.epoch}: ${f.title} in ${f.where}`));
    }
    folded.append(sub);
    item.append(folded);
  }
  return item;
}

function evidenceTarget(subject) {
  // The kind and layer that show a subject (`feature_maps/conv2`, `health/dense_1`).
  const [kind, ...rest] = subject.split("/");
  const layer = rest.length ? rest.join("/") : null;
  const group = (state.runs.find((r) => r.run === state.run) || {}).group;
  const inGroup = state.runs.filter((r) => r.group === group);
  const own = inGroup.find((r) => r.kind === kind);
  if (own) return { kind, run: own.run, layer: onePerLayer(kind) ? null : layer };
  if (layer === null) return null;
  // A layer's health numbers are shown beside any kind that draws it (the scalars route
  // adds them); a layer no kind draws (a dense layer) has its numbers only.
  const drawn = inGroup.find((r) => r.layers.some((l) => l.layer === layer));
  return drawn ? { kind: drawn.kind, run: drawn.run, layer } : { layer, numbersOnly: true };
}

async function showEvidence(line) {
  const target = evidenceTarget(line.subjects[0]);
  if (target === null) {
    setStatus(`Evidence: ${line.evidence.replaceAll("`", "")}`);
    return;
  }
  if (target.numbersOnly) {
    state.scalars = await getJson("scalars", { run: state.run, layer: target.layer });
    drawScalars();
    ui.scalars.prepend(el("p", { class: "hint" }, `layer ${target.layer} (no pictures):`));
  } else {
    choose(target);
    await loadSheet();
    saveView({ push: true }); // the evidence is a view of its own: back returns
  }
  const plots = [...ui.scalars.querySelectorAll(".plot")];
  const plot = plots.find((p) => p.querySelector("h3").textContent === line.quantity);
  for (const p of plots) p.classList.toggle("evidence", p === plot);
  if (plot) plot.scrollIntoView({ block: "nearest" });
  setStatus(`Evidence: ${line.evidence.replaceAll("`", "")}`);
}

function drawAll() {
  ui.root.style.setProperty("--cell", `${state.cell}px`);
  drawNotices();
  drawDiagnosis().catch((e) => setStatus(`Could not load the diagnosis: ${e.message}`));
  drawSheet();
  drawNow();
  drawScalars();
  drawAlerts();
  drawPosition();
  drawEpochs();
}

// Moving through epochs.

function setIndex(index) {
  const n = state.steps.length;
  if (!n) return;
  state.index = ((index % n) + n) % n;
  state.missed = null; // the user picked an epoch of this kind
  drawNow();
  drawPosition();
  drawEpochs();
  saveView();
}

function stop() {
  if (state.timer !== null) clearInterval(state.timer);
  state.timer = null;
  ui.play.textContent = "▶ play";
  ui.play.setAttribute("aria-pressed", "false");
}

function togglePlay() {
  if (state.timer !== null) {
    stop();
    return;
  }
  state.timer = setInterval(() => setIndex(state.index + 1), PLAY_MS);
  ui.play.textContent = "❚❚ pause";
  ui.play.setAttribute("aria-pressed", "true");
}

function onKey(event) {
  if (event.target instanceof HTMLSelectElement) return;
  if (event.key === "ArrowRight") setIndex(state.index + 1);
  else if (event.key === "ArrowLeft") setIndex(state.index - 1);
  else if (event.key === "Home") setIndex(0);
  else if (event.key === "End") setIndex(-1);
  else if (event.key === " " && !(event.target instanceof HTMLButtonElement)) togglePlay();
  else return;
  event.preventDefault();
}

// The page.

function build() {
  const link = el("link", { rel: "stylesheet", href: "style.css" });
  document.head.append(link);
  const meta = el("meta", { name: "color-scheme", content: "light dark" });
  document.head.append(meta);

  ui.root = el("div", { class: "convviz" });
  const bar = el("header", { class: "bar" });
  const labelled = (text, control) => {
    const label = el("label", {}, text);
    label.append(control);
    return label;
  };
  ui.kind = el("select", { id: "kind" });
  ui.run = el("select", { id: "run" });
  ui.layer = el("select", { id: "layer" });
  ui.compare = el("select", { id: "compare", title: "another run of this kind, under each row" });
  ui.outline = el("button", {
    id: "outline",
    type: "button",
    "aria-pressed": "false",
    title: "outline each probe image's region (regions=) on its image and overlay",
  }, "▢ region outline");
  ui.outline.hidden = true;
  ui.play = el("button", { id: "play", type: "button", "aria-pressed": "false" }, "▶ play");
  ui.slider = el("input", { id: "scrub", type: "range", min: "0", max: "0", step: "1" });
  ui.epoch = el("span", { id: "epoch", class: "epoch-label" });
  const { min, max, step } = CELL;
  ui.size = el("input", { id: "cell", type: "range", min, max, step });
  ui.size.value = String(state.cell);
  ui.refresh = el("button", { id: "refresh", type: "button", title: "reload the logs" }, "⟳ refresh");
  ui.status = el("span", { id: "status", class: "status", role: "status" });
  bar.append(
    labelled("kind", ui.kind),
    labelled("run", ui.run),
    labelled("layer", ui.layer),
    labelled("compare with", ui.compare),
    ui.outline,
    ui.play,
    ui.slider,
    ui.epoch,
    labelled("cell", ui.size),
    ui.refresh,
    ui.status,
  );

  const body = el("div", { class: "body" });
  const main = el("main");
  ui.notice = el("p", { id: "notice", class: "notice", role: "status" });
  ui.notice.hidden = true;
  main.append(ui.notice);
  ui.epochs = el("p", { id: "kind-epochs", class: "epochs-note", role: "note" });
  ui.epochs.hidden = true;
  main.append(ui.epochs);
  main.append(el("h2", {}, "Now"));
  ui.now = el("section", { id: "now", class: "now" });
  main.append(ui.now);
  const sheetHead = el("h2", {}, "Every epoch ");
  ui.thinned = el("span", { class: "hint" });
  sheetHead.append(ui.thinned);
  main.append(sheetHead);
  ui.sheet = el("section", { id: "sheet", class: "sheet-box" });
  main.append(ui.sheet);
  const aside = el("aside");
  // What went wrong first, then the numbers that show it.
  aside.append(el("h2", {}, "Alerts"));
  ui.alerts = el("section", { id: "alerts" });
  aside.append(ui.alerts);
  aside.append(el("h2", {}, "Scalars"));
  ui.scalars = el("section", { id: "scalars" });
  aside.append(ui.scalars);
  body.append(main, aside);
  ui.root.append(bar, buildDiagnosis(), body);
  document.body.append(ui.root);

  observer = new IntersectionObserver(
    (entries) => {
      for (const item of entries) {
        if (!item.isIntersecting) continue;
        item.target.src = item.target.dataset.src;
        observer.unobserve(item.target);
      }
    },
    { rootMargin: "300px" },
  );

  const chosen = (wanted) => {
    // The user's choice: a new view, a new history entry.
    state.notices = [];
    drawNotices();
    choose(wanted);
    loadSheet()
      .then(() => saveView({ push: true }))
      .catch((e) => setStatus(e.message));
  };
  ui.kind.addEventListener("change", () => chosen({ kind: ui.kind.value }));
  ui.run.addEventListener("change", () => chosen({ run: ui.run.value }));
  ui.layer.addEventListener("change", () =>
    chosen({ layer: ui.layer.value === "" ? null : ui.layer.value }),
  );
  ui.compare.addEventListener("change", () => chosen({ compare: ui.compare.value || null }));
  ui.play.addEventListener("click", togglePlay);
  ui.outline.addEventListener("click", toggleOutline);
  ui.slider.addEventListener("input", () => setIndex(Number(ui.slider.value)));
  ui.size.addEventListener("input", () => {
    state.cell = Number(ui.size.value);
    drawAll();
    saveView();
  });
  ui.refresh.addEventListener("click", () => refresh());
  // The back button, or an address edited by hand, while the tab is open.
  const host = linkWindow();
  host.addEventListener("hashchange", onLinkChange);
  window.addEventListener("pagehide", () => host.removeEventListener("hashchange", onLinkChange));
  document.addEventListener("keydown", onKey);
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      drawSheet();
      drawNow();
      drawPosition();
    }, 150);
  });
}

export async function render() {
  build();
  // The arrow keys reach this frame only when it has the focus; take it when the tab opens.
  window.focus();
  setStatus("loading…");
  await refresh(readLink());
}
