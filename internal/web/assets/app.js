// corral web dashboard. Plain JavaScript, no framework and no build step: the page is small, and
// what a framework would bring (components, diffing) costs more to vendor and audit than the few
// render functions below. DOM is built with h() and textContent only (never innerHTML), so a log
// line or an app name can never become markup. Charts are hand-written SVG (chart()).
'use strict';

const $ = (sel) => document.querySelector(sel);
const HISTORY_SECONDS = 300;
const MAX_LOG_LINES = 1000;
const MAX_EVENTS = 300;

const S = {
  csrf: '',
  procs: [],
  hist: new Map(), // pm_id -> [{t, cpu, mem}]
  sel: null, // selected pm_id
  filter: '',
  events: [],
  logSrc: null,
  logKey: '',
  stream: null,
  eventsDue: false,
  opens: 0, // how many times the stream (re)connected
};

// h builds an element: h('td', {class: 'x', dataset: {id: 1}}, 'text', child).
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

// ---- formatting ----

function fmtBytes(b) {
  if (!b) return '0 B';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (b >= 100 || i === 0 ? b.toFixed(0) : b.toFixed(1)) + ' ' + u[i];
}

function fmtUptime(ms) {
  if (!ms || ms < 0) return '–';
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h';
  return Math.floor(s / 86400) + 'D';
}

function fmtTime(t) {
  const d = new Date(t);
  return d.toLocaleTimeString([], { hour12: false });
}

const statusClass = (st) => 's-' + String(st || 'unknown').replace(/\s+/g, '-');

// ---- the process table ----

function visibleProcs() {
  const f = S.filter.trim().toLowerCase();
  const ps = S.procs.slice().sort((a, b) => a.name.localeCompare(b.name) || a.id - b.id);
  if (!f) return ps;
  return ps.filter((p) => [p.name, p.namespace, p.status, String(p.id), String(p.pid)].some((s) => s.toLowerCase().includes(f)));
}

function renderSummary() {
  const count = (st) => S.procs.filter((p) => p.status === st).length;
  const cpu = S.procs.reduce((a, p) => a + (p.cpu || 0), 0);
  const mem = S.procs.reduce((a, p) => a + (p.mem || 0), 0);
  const apps = new Set(S.procs.map((p) => p.name)).size;
  const chip = (cls, label, n) => h('span', { class: 'chip ' + cls }, h('span', { class: 'st-dot' }), label, ' ', h('b', {}, n));
  const box = $('#summary');
  box.replaceChildren(
    h('span', { class: 'chip' }, 'apps ', h('b', {}, apps)),
    chip('s-online', 'online', count('online')),
    chip('s-stopped', 'stopped', count('stopped')),
    chip('s-errored', 'errored', count('errored')),
    h('span', { class: 'chip' }, 'cpu ', h('b', {}, cpu.toFixed(1) + '%')),
    h('span', { class: 'chip' }, 'memory ', h('b', {}, fmtBytes(mem))),
  );
}

// renderTable updates the rows in place (kept per pm_id): a row rebuilt every second would swallow
// a click that lands while it is replaced.
const rows = new Map(); // pm_id -> {tr, cells}

function makeRow(p) {
  const cells = {};
  const td = (cls) => (cells[cls] = h('td', { class: cls }));
  const pick = () => { document.querySelector('input[name=scope][value=proc]').checked = true; select(p.id); };
  const tr = h('tr', { tabindex: 0, onclick: pick, onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick(); } } },
    td('c-id'), td('c-name'), td('c-ns'), td('c-mode'), td('c-pid'), td('c-up'), td('c-rs'), td('c-st'), td('c-cpu'), td('c-mem'), td('c-act'));
  cells['c-pid'].classList.add('pid');
  cells.name = h('span');
  cells.inst = h('span', { class: 'inst' });
  cells['c-name'].append(cells.name, cells.inst);
  cells.st = h('span', { class: 'status' }, h('span', { class: 'st-dot' }), h('span'));
  cells['c-st'].append(cells.st);
  cells.bar = h('span', { class: 'bar' }, h('i'));
  cells.cpu = h('span');
  cells['c-cpu'].append(cells.bar, cells.cpu);
  cells['c-act'].append(h('button', {
    class: 'icon', title: 'restart ' + p.name + ' [' + p.id + ']', 'aria-label': 'restart ' + p.id, dataset: { act: 'restart', id: p.id },
    onclick: (e) => { e.stopPropagation(); act({ action: 'restart', target: String(p.id) }, 'restart ' + p.name + ' [' + p.id + ']'); },
  }, '↻'));
  return { tr, cells };
}

function setText(el, v) { v = String(v); if (el.textContent !== v) el.textContent = v; }
function setClass(el, v) { if (el.className !== v) el.className = v; }

function fillRow(r, p, now) {
  const c = r.cells;
  const running = p.status === 'online' || p.status === 'launching' || p.status === 'stopping';
  const cpuPct = Math.min(100, p.cpu || 0);
  r.tr.dataset.id = p.id;
  r.tr.dataset.name = p.name;
  r.tr.dataset.status = p.status;
  r.tr.classList.toggle('sel', p.id === S.sel);
  setText(c['c-id'], p.id);
  setText(c.name, p.name);
  c['c-name'].title = p.name;
  setText(c.inst, p.instances > 1 ? '#' + p.instance : '');
  setText(c['c-ns'], p.namespace);
  setText(c['c-mode'], p.mode);
  setText(c['c-pid'], p.pid || '–');
  setText(c['c-up'], running ? fmtUptime(now - p.started_at) : '–');
  setText(c['c-rs'], p.restarts);
  setClass(c['c-rs'], 'c-rs' + (p.unstable_restarts > 0 ? ' hot' : ''));
  setClass(c.st, 'status ' + statusClass(p.status));
  setText(c.st.lastChild, p.status);
  setClass(c.bar, 'bar' + (cpuPct > 80 ? ' hot' : ''));
  c.bar.firstChild.style.width = cpuPct + '%';
  setText(c.cpu, (p.cpu || 0).toFixed(1) + '%');
  setText(c['c-mem'], fmtBytes(p.mem));
}

// An app of several instances gets a row of its own above them: the instances' totals, a status
// summary and a restart of the whole app.
const appRows = new Map(); // app name -> {tr, cells}

function makeAppRow(name) {
  const cells = {};
  const td = (cls) => (cells[cls] = h('td', { class: cls }));
  const tr = h('tr', {
    class: 'app-row', tabindex: 0, dataset: { app: name },
    onclick: () => selectApp(name),
    onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); selectApp(name); } },
  }, td('c-id'), td('c-name'), td('c-ns'), td('c-mode'), td('c-pid'), td('c-up'), td('c-rs'), td('c-st'), td('c-cpu'), td('c-mem'), td('c-act'));
  cells.name = h('span');
  cells.count = h('span', { class: 'inst' });
  cells['c-name'].append(cells.name, cells.count);
  cells.st = h('span', { class: 'status' }, h('span', { class: 'st-dot' }), h('span'));
  cells['c-st'].append(cells.st);
  cells['c-act'].append(h('button', {
    class: 'icon', title: 'restart every instance of ' + name, 'aria-label': 'restart app ' + name, dataset: { act: 'restart-app', app: name },
    onclick: (e) => { e.stopPropagation(); act({ action: 'restart', target: name }, 'restart ' + name); },
  }, '↻'));
  return { tr, cells };
}

function fillAppRow(r, name, procs) {
  const c = r.cells;
  const online = procs.filter((p) => p.status === 'online').length;
  const errored = procs.some((p) => p.status === 'errored');
  const st = online === procs.length ? 'online' : errored ? 'errored' : online === 0 ? 'stopped' : 'launching';
  setText(c.name, name);
  setText(c.count, '×' + procs.length);
  c.count.title = procs.length + ' instances';
  setText(c['c-ns'], procs[0].namespace);
  setText(c['c-mode'], procs[0].mode);
  setText(c['c-rs'], procs.reduce((a, p) => a + p.restarts, 0));
  setClass(c.st, 'status ' + statusClass(st));
  setText(c.st.lastChild, online + '/' + procs.length + ' online');
  setText(c['c-cpu'], procs.reduce((a, p) => a + (p.cpu || 0), 0).toFixed(1) + '%');
  setText(c['c-mem'], fmtBytes(procs.reduce((a, p) => a + (p.mem || 0), 0)));
  const sel = selected();
  setClass(r.tr, 'app-row' + (sel && sel.name === name && scopeIsApp() ? ' sel' : ''));
}

function scopeIsApp() { return document.querySelector('input[name=scope]:checked').value === 'app'; }

function selectApp(name) {
  const first = S.procs.filter((p) => p.name === name).sort((a, b) => a.id - b.id)[0];
  if (!first) return;
  document.querySelector('input[name=scope][value=app]').checked = true;
  select(first.id);
}

function renderTable() {
  const tbody = $('#procs tbody');
  const now = Date.now();
  const want = visibleProcs();
  const sizes = new Map();
  for (const p of S.procs) sizes.set(p.name, (sizes.get(p.name) || 0) + 1);
  const order = []; // the rows, in display order
  const seenApps = new Set();
  for (const p of want) {
    if (sizes.get(p.name) > 1 && !seenApps.has(p.name)) {
      seenApps.add(p.name);
      let a = appRows.get(p.name);
      if (!a) { a = makeAppRow(p.name); appRows.set(p.name, a); }
      fillAppRow(a, p.name, S.procs.filter((q) => q.name === p.name));
      order.push(a.tr);
    }
    let r = rows.get(p.id);
    if (!r) { r = makeRow(p); rows.set(p.id, r); }
    fillRow(r, p, now);
    r.tr.classList.toggle('inst-row', sizes.get(p.name) > 1);
    order.push(r.tr);
  }
  const keepIds = new Set(want.map((p) => p.id));
  for (const [id, r] of rows) if (!keepIds.has(id)) { r.tr.remove(); rows.delete(id); }
  for (const [name, a] of appRows) if (!seenApps.has(name)) { a.tr.remove(); appRows.delete(name); }
  order.forEach((tr, i) => { if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
  $('#empty').hidden = S.procs.length > 0;
}

// ---- the selected process ----

function selected() { return S.procs.find((p) => p.id === S.sel) || null; }

function select(id) {
  S.sel = id;
  renderTable();
  renderDetail();
  openLogs();
  renderEvents();
}

function renderDetail() {
  const p = selected();
  $('#toolbar').hidden = !p;
  $('#charts').hidden = !p;
  $('#env-box').hidden = !p || !p.env || p.env.length === 0;
  const badge = $('#detail-status');
  if (!p) {
    $('#detail-h').textContent = S.sel === null ? 'Select a process' : 'Process ' + S.sel + ' is gone';
    badge.textContent = '';
    badge.className = 'badge';
    $('#meta').replaceChildren();
    return;
  }
  $('#detail-h').textContent = p.name + ' [' + p.id + ']';
  badge.textContent = p.status;
  badge.className = 'badge ' + statusClass(p.status);
  const appSize = S.procs.filter((q) => q.name === p.name).length;
  $('#scope-app').textContent = 'whole app (' + appSize + ')';
  $('#instances').textContent = appSize;
  const running = p.status === 'online' || p.status === 'launching';
  document.querySelector('[data-act="stop"]').disabled = !running && p.status !== 'waiting restart';
  document.querySelector('[data-act="start"]').disabled = running;
  document.querySelector('[data-act="scale"][data-spec="-1"]').disabled = appSize <= 1;

  const meta = [
    ['status', p.status + (p.pid ? ' · pid ' + p.pid : '')],
    ['uptime', running ? fmtUptime(Date.now() - p.started_at) : '–'],
    ['restarts', p.restarts + (p.unstable_restarts ? ' (' + p.unstable_restarts + ' unstable)' : '')],
    ['last exit', p.exit_signal ? 'signal ' + p.exit_signal : p.restarts || p.exit_code ? 'code ' + p.exit_code : '–'],
    ['mode', p.mode + ' · instance ' + p.instance + ' of ' + appSize],
    ['namespace', p.namespace],
    ['script', p.script + (p.args && p.args.length ? ' ' + p.args.join(' ') : '')],
    ['interpreter', p.interpreter || 'none'],
    ['cwd', p.cwd],
    ['out log', p.out_log || '–'],
    ['err log', p.err_log || '–'],
  ];
  if (p.watch) meta.push(['watch', 'on']);
  for (const n of p.notes || []) meta.push(['note', n]);
  $('#meta').replaceChildren(...meta.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  $('#env').replaceChildren(...(p.env || []).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  renderCharts();
}

// chart draws samples (oldest first) as an SVG area chart over the last minutes (up to five). It is
// hand-written (about 50 lines) rather than a vendored library: two series of at most 300 points
// need a path, a grid and two labels, and this way nothing is fetched, nothing needs 'unsafe-eval'
// or inline styles under the page's Content-Security-Policy, and there is no third-party code to
// keep up to date.
function chart(box, samples, key, kind, fmt, floorMax) {
  const W = 300, H = 86, top = 6, bottom = H - 14;
  const el = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img' });
  const now = Date.now() / 1000;
  const pts = samples.filter((s) => now - s.t <= HISTORY_SECONDS);
  // The time axis spans what is known: from the oldest sample (at least a minute), up to 5 minutes.
  const span = Math.min(HISTORY_SECONDS, Math.max(60, pts.length ? Math.ceil((now - pts[0].t) / 30) * 30 : 60));
  const x = (t) => W * (1 - (now - t) / span);
  const peak = Math.max(floorMax, ...pts.map((s) => s[key]));
  const y = (v) => bottom - (bottom - top) * (v / peak);
  for (const f of [0, 0.5, 1]) el.append(svg('line', { class: 'grid', x1: 0, x2: W, y1: y(peak * f), y2: y(peak * f), 'vector-effect': 'non-scaling-stroke' }));
  const spanText = span >= 120 ? span / 60 + ' min ago' : span + ' s ago';
  el.setAttribute('aria-label', kind + ' over the last ' + spanText.replace(' ago', '') + ', peak ' + fmt(peak));
  if (pts.length < 2) {
    const t = svg('text', { class: 'nodata', x: W / 2, y: H / 2, 'text-anchor': 'middle' });
    t.textContent = pts.length ? 'collecting…' : 'no samples (not running)';
    el.append(t);
  } else {
    let d = '';
    pts.forEach((s, i) => { d += (i ? 'L' : 'M') + x(s.t).toFixed(1) + ' ' + y(s[key]).toFixed(1); });
    const area = d + `L${x(pts[pts.length - 1].t).toFixed(1)} ${bottom}L${x(pts[0].t).toFixed(1)} ${bottom}Z`;
    el.append(svg('path', { d: area, class: kind + '-area', stroke: 'none' }));
    el.append(svg('path', { d, class: kind + '-line', fill: 'none', 'stroke-width': 1.6, 'vector-effect': 'non-scaling-stroke', 'stroke-linejoin': 'round' }));
  }
  const lbl = svg('text', { class: 'lbl', x: 2, y: top + 8 });
  lbl.textContent = fmt(peak);
  const ago = svg('text', { class: 'lbl', x: 2, y: H - 2 });
  ago.textContent = spanText;
  const nowL = svg('text', { class: 'lbl', x: W - 2, y: H - 2, 'text-anchor': 'end' });
  nowL.textContent = 'now';
  el.append(lbl, ago, nowL);
  box.replaceChildren(el);
}

function renderCharts() {
  const p = selected();
  if (!p) return;
  const samples = S.hist.get(p.id) || [];
  chart($('#chart-cpu'), samples, 'cpu', 'cpu', (v) => v.toFixed(v < 10 ? 1 : 0) + '%', 5);
  chart($('#chart-mem'), samples, 'mem', 'mem', fmtBytes, 16 << 20);
  $('#cpu-now').textContent = (p.cpu || 0).toFixed(1) + '%';
  $('#mem-now').textContent = fmtBytes(p.mem);
}

function addHistory(list, replace) {
  if (replace) S.hist = new Map();
  const cut = Date.now() / 1000 - HISTORY_SECONDS - 5;
  for (const ph of list || []) {
    const arr = S.hist.get(ph.pm_id) || [];
    for (const s of ph.samples || []) if (!arr.length || s.t > arr[arr.length - 1].t) arr.push(s);
    while (arr.length && arr[0].t < cut) arr.shift();
    S.hist.set(ph.pm_id, arr);
  }
}

// ---- logs ----

function openLogs() {
  const all = $('#logs-all').checked;
  const p = selected();
  const target = all || !p ? 'all' : String(p.id);
  if (target === S.logKey && S.logSrc) return;
  if (S.logSrc) S.logSrc.close();
  S.logKey = target;
  $('#logs-of').textContent = target === 'all' ? '· every process' : '· ' + p.name + ' [' + p.id + ']';
  const box = $('#logs');
  box.replaceChildren(h('div', { class: 'hint' }, 'loading…'));
  const es = new EventSource('/api/logs?lines=200&target=' + encodeURIComponent(target));
  S.logSrc = es;
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED && S.logSrc === es) {
      box.append(h('div', { class: 'hint' }, 'log stream closed (the process is gone or the page is signed out)'));
      S.logSrc = null; // reopened when the user picks a process or the page signs in again
    }
  };
  es.addEventListener('tail', (e) => {
    const lines = JSON.parse(e.data) || [];
    box.replaceChildren(...lines.map((l) => logLine(l, true)));
    if (!lines.length) box.append(h('div', { class: 'hint' }, 'no output yet'));
    box.scrollTop = box.scrollHeight;
  });
  es.addEventListener('line', (e) => {
    const l = JSON.parse(e.data);
    const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 24;
    const hint = box.querySelector('.hint');
    if (hint) hint.remove();
    box.append(logLine(l, false));
    while (box.childElementCount > MAX_LOG_LINES) box.firstElementChild.remove();
    if (stick) box.scrollTop = box.scrollHeight;
  });
}

function logLine(l, old) {
  return h('div', { class: 'line ' + l.stream + (old ? ' old' : ''), dataset: { id: l.id } },
    h('span', { class: 'who' }, l.name + '[' + l.id + ']'), l.text);
}

// ---- events ----

function renderEvents() {
  const only = $('#events-sel').checked && selected();
  const name = only ? selected().name : null;
  const items = S.events.filter((e) => !name || e.app === name).slice(-MAX_EVENTS).reverse();
  $('#events').replaceChildren(...items.map((e) => h('li', { class: e.level, dataset: { type: e.type } },
    h('time', { datetime: e.time, title: new Date(e.time).toLocaleString() }, fmtTime(e.time)),
    h('span', { class: 'lv' }),
    h('div', {},
      h('span', { class: 'who' }, (e.app || 'daemon') + (e.pm_id !== undefined && e.pm_id !== null ? '[' + e.pm_id + ']' : '')),
      h('span', { class: 'txt' }, e.text),
      e.pid ? h('span', { class: 'muted' }, ' · pid ' + e.pid) : null,
      e.details && e.details.length ? h('pre', {}, e.details.join('\n')) : null),
  )));
  if (!items.length) $('#events').append(h('li', { class: 'muted' }, h('span'), h('span'), 'No events yet.'));
}

// ---- actions ----

function toast(text, bad) {
  const t = h('div', { class: 'toast' + (bad ? ' bad' : ''), role: bad ? 'alert' : 'status' }, text);
  $('#toasts').append(t);
  setTimeout(() => t.remove(), bad ? 8000 : 3500);
}

function confirmDialog(text) {
  const dlg = $('#confirm');
  $('#confirm-text').textContent = text;
  return new Promise((resolve) => {
    const done = (ok) => { dlg.close(); $('#confirm-ok').onclick = null; $('#confirm-cancel').onclick = null; resolve(ok); };
    $('#confirm-ok').onclick = () => done(true);
    $('#confirm-cancel').onclick = () => done(false);
    dlg.oncancel = () => done(false);
    dlg.showModal();
  });
}

async function act(body, what) {
  try {
    const r = await fetch('/api/action', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Corral-CSRF': S.csrf },
      body: JSON.stringify(body),
      credentials: 'same-origin',
    });
    const res = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(res.error || r.status + ' ' + r.statusText);
    toast(what + ': done' + (res.notes && res.notes.length ? ' — ' + res.notes.join('; ') : ''));
  } catch (err) {
    toast(what + ' failed: ' + err.message, true);
  }
}

async function toolbarAction(btn) {
  const p = selected();
  if (!p) return;
  const scopeApp = document.querySelector('input[name=scope]:checked').value === 'app';
  const target = scopeApp ? p.name : String(p.id);
  const label = scopeApp ? p.name : p.name + ' [' + p.id + ']';
  const a = btn.dataset.act;
  const body = { action: a, target };
  let what = a + ' ' + label;
  if (a === 'scale') {
    body.target = p.name;
    body.spec = btn.dataset.spec;
    what = 'scale ' + p.name + ' ' + btn.dataset.spec;
  }
  if (a === 'signal') {
    body.signal = $('#signal').value;
    what = 'send ' + body.signal + ' to ' + label;
  }
  const risky = { delete: 'Delete ' + label + '? Its processes are stopped and forgotten.', stop: 'Stop ' + label + '?' };
  if (a === 'signal' && /KILL|TERM|INT/.test(body.signal)) risky.signal = 'Send ' + body.signal + ' to ' + label + '?';
  if (risky[a] && !(await confirmDialog(risky[a]))) return;
  btn.disabled = true;
  await act(body, what);
  btn.disabled = false;
}

// ---- the live stream ----

function setConn(state, label) {
  const c = $('#conn');
  c.className = 'conn ' + state;
  c.querySelector('.label').textContent = label;
}

function banner(text) {
  const b = $('#banner');
  b.hidden = !text;
  b.replaceChildren(...(text ? [text] : []));
}

function connect() {
  if (S.stream) S.stream.close();
  const es = new EventSource('/api/stream');
  S.stream = es;
  es.onopen = () => { S.opens++; setConn('live', 'live'); banner(''); S.events = []; };
  es.onerror = () => {
    setConn('down', 'reconnecting…');
    if (es.readyState === EventSource.CLOSED) setTimeout(recover, 2000);
  };
  es.addEventListener('procs', (e) => {
    S.procs = JSON.parse(e.data) || [];
    if (S.sel === null && S.procs.length) S.sel = S.procs[0].id;
    renderSummary();
    renderTable();
    renderDetail();
    if (!S.logSrc && !S.logKey && S.sel !== null) openLogs(); // the first time only
  });
  es.addEventListener('history', (e) => { addHistory(JSON.parse(e.data), true); renderCharts(); });
  es.addEventListener('samples', (e) => { addHistory(JSON.parse(e.data), false); renderCharts(); });
  es.addEventListener('event', (e) => {
    const ev = JSON.parse(e.data);
    if (S.events.length && S.events[S.events.length - 1].seq >= ev.seq) S.events = []; // a new daemon
    S.events.push(ev);
    if (S.events.length > MAX_EVENTS * 2) S.events.splice(0, S.events.length - MAX_EVENTS);
    if (!S.eventsDue) { // a burst (the backlog of 200 on connect) renders once
      S.eventsDue = true;
      setTimeout(() => { S.eventsDue = false; renderEvents(); }, 50);
    }
  });
  es.addEventListener('failure', (e) => toast(JSON.parse(e.data).error, true));
}

// recover runs when the stream was refused (not merely cut): signed out, or the daemon is gone.
async function recover() {
  try {
    const r = await fetch('/api/session', { credentials: 'same-origin' });
    if (r.status === 401) {
      setConn('down', 'signed out');
      banner('This page is no longer signed in (the token changed or the dashboard restarted with a new one). Run `corral web` and open the URL it prints.');
      return;
    }
    const s = await r.json();
    S.csrf = s.csrf;
    connect();
    if (S.logKey) { if (S.logSrc) S.logSrc.close(); S.logSrc = null; S.logKey = ''; openLogs(); }
  } catch (err) {
    setConn('down', 'daemon unreachable');
    banner('The daemon does not answer. Retrying…');
    setTimeout(recover, 3000);
  }
}

async function main() {
  $('#filter').addEventListener('input', (e) => { S.filter = e.target.value; renderTable(); });
  $('#toolbar').addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-act]');
    if (btn) toolbarAction(btn);
  });
  $('#logs-all').addEventListener('change', openLogs);
  document.querySelectorAll('input[name=scope]').forEach((r) => r.addEventListener('change', renderTable));
  $('#events-sel').addEventListener('change', renderEvents);
  document.querySelectorAll('.seg button').forEach((b) => b.addEventListener('click', () => {
    document.querySelectorAll('.seg button').forEach((x) => x.classList.toggle('on', x === b));
    $('#logs').className = 'log' + (b.dataset.stream === 'all' ? '' : ' only-' + b.dataset.stream);
  }));
  setInterval(() => { renderTable(); renderCharts(); }, 5000); // uptimes and the charts' time axis move on
  renderEvents();
  await recover();
}

main();
