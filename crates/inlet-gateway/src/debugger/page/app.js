// Inlet's live debugger. Reads the admin API with the operator token (kept in this tab's session
// storage only) and shows one source's events as they are stored. No dependencies, no build step.
'use strict';

const MAX_ROWS = 500;
const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem('inlet-operator-token') ?? '',
  sources: [],
  events: [], // newest first: {lsn, record}
  paused: false,
  waiting: 0, // events received while paused
  dropped: 0,
  selected: null,
  stream: null, // AbortController of the live stream
};

function api(path, signal) {
  return fetch(path, { headers: { Authorization: `Bearer ${state.token}` }, signal, cache: 'no-store' });
}

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

async function refusal(response) {
  const body = await response.json().catch(() => ({}));
  return `${response.status} ${body.code ?? ''}: ${body.message ?? response.statusText}`;
}

async function connect() {
  const response = await api('/admin/debugger/sources');
  if (!response.ok) {
    $('main').hidden = true;
    setStatus(`Refused — ${await refusal(response)}`, true);
    return;
  }
  sessionStorage.setItem('inlet-operator-token', state.token);
  const body = await response.json();
  state.sources = body.sources;
  state.sampleNote = body.sample_per_second;
  const select = $('source');
  select.replaceChildren(...state.sources.map((s) => new Option(s.name, s.name)));
  const wanted = new URLSearchParams(location.search).get('source');
  if (wanted && state.sources.some((s) => s.name === wanted)) select.value = wanted;
  $('main').hidden = false;
  watch(select.value);
  refreshRates();
}

// The live stream: Server-Sent Events read with fetch, so the token can go in a header.
async function watch(source) {
  state.stream?.abort();
  const controller = new AbortController();
  state.stream = controller;
  state.events = [];
  state.waiting = 0;
  state.dropped = 0;
  render();
  while (!controller.signal.aborted) {
    try {
      const response = await api(`/admin/debugger/sources/${encodeURIComponent(source)}/events`, controller.signal);
      if (!response.ok) {
        setStatus(`Stream refused — ${await refusal(response)}`, true);
        if (response.status === 401) return;
      } else {
        setStatus(`Connected: watching ${source} (at most ${state.sampleNote} events a second are sampled).`);
        await readEvents(response.body, controller.signal);
        if (!controller.signal.aborted) setStatus('Stream ended; reconnecting…');
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      setStatus(`Stream interrupted (${error.message}); reconnecting…`, true);
    }
    // Reconnects resume from the kept events; the list starts over so nothing shows twice.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    state.events = [];
  }
}

async function readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { event: 'message', data: [], id: null };
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') message.data.push(text);
        else if (field === 'event') message.event = text;
        else if (field === 'id') message.id = text;
      }
      if (message.data.length) received(message);
    }
  }
}

function received(message) {
  if (message.event === 'dropped') {
    state.dropped += Number(message.data.join('')) || 0;
  } else {
    let record;
    try {
      record = JSON.parse(message.data.join('\n'));
    } catch {
      return;
    }
    state.events.unshift({ lsn: Number(message.id), record });
    if (state.events.length > MAX_ROWS * 2) state.events.length = MAX_ROWS * 2;
    if (state.paused) {
      state.waiting += 1;
      showCounts();
      return;
    }
  }
  scheduleRender();
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function filters() {
  return {
    type: $('type').value,
    event: $('event').value.trim().toLowerCase(),
    user: $('user').value.trim(),
    anonymous: $('anonymous').value.trim(),
    violationsOnly: $('violations-only').checked,
  };
}

function matches(entry, f) {
  const e = entry.record.event ?? {};
  if (f.type && e.type !== f.type) return false;
  if (f.event && !String(e.event ?? e.name ?? '').toLowerCase().includes(f.event)) return false;
  if (f.user && e.userId !== f.user) return false;
  if (f.anonymous && e.anonymousId !== f.anonymous) return false;
  if (f.violationsOnly && !entry.record.violations) return false;
  return true;
}

function planBadge(record) {
  const span = document.createElement('span');
  if (!record.tracking_plan) {
    span.className = 'badge ok';
    span.textContent = 'ok';
  } else {
    const blocked = record.tracking_plan === 'block';
    span.className = `badge ${blocked ? 'blocked' : 'violating'}`;
    const n = record.violations?.length ?? 0;
    span.textContent = `${blocked ? 'blocked' : record.tracking_plan}: ${n} violation${n === 1 ? '' : 's'}`;
  }
  return span;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text ?? '';
  if (className) td.className = className;
  return td;
}

function render() {
  const f = filters();
  const shown = state.events.filter((entry) => matches(entry, f)).slice(0, MAX_ROWS);
  const rows = shown.map((entry) => {
    const e = entry.record.event ?? {};
    const tr = document.createElement('tr');
    tr.tabIndex = 0;
    tr.dataset.lsn = entry.lsn;
    tr.dataset.messageId = e.messageId ?? '';
    tr.setAttribute('aria-selected', String(state.selected === entry.lsn));
    const received = e.receivedAt ? new Date(e.receivedAt).toLocaleTimeString() : '';
    const planCell = document.createElement('td');
    planCell.append(planBadge(entry.record));
    tr.append(cell(received), cell(e.type), cell(e.event ?? e.name ?? ''), cell(e.userId ?? e.anonymousId ?? ''), planCell);
    tr.addEventListener('click', () => select(entry));
    tr.addEventListener('keydown', (key) => {
      if (key.key === 'Enter' || key.key === ' ') {
        key.preventDefault();
        select(entry);
      }
    });
    return tr;
  });
  $('events').tBodies[0].replaceChildren(...rows);
  showCounts(shown.length);
}

function showCounts(shown) {
  const parts = [];
  if (shown !== undefined) parts.push(`${shown} shown of ${Math.min(state.events.length, MAX_ROWS * 2)} received`);
  if (state.paused) parts.push(`paused: ${state.waiting} new`);
  if (state.dropped) parts.push(`${state.dropped} not shown (the page fell behind)`);
  if (parts.length) $('counts').textContent = parts.join(' · ');
}

function select(entry) {
  state.selected = entry.lsn;
  const detail = $('detail');
  const e = entry.record.event ?? {};
  const title = document.createElement('h3');
  title.textContent = `${e.type ?? ''} ${e.event ?? e.name ?? ''} · WAL position ${entry.lsn}`;
  const parts = [title];
  const verdict = document.createElement('p');
  verdict.append('Tracking plan: ', planBadge(entry.record));
  parts.push(verdict);
  if (entry.record.violations?.length) {
    const list = document.createElement('ul');
    list.className = 'violations';
    for (const v of entry.record.violations) {
      const li = document.createElement('li');
      const code = document.createElement('code');
      code.textContent = `${v.kind} ${v.property}`;
      li.append(code, ` — ${v.message}`);
      list.append(li);
    }
    parts.push(list);
  }
  const pre = document.createElement('pre');
  pre.textContent = JSON.stringify(entry.record, null, 2);
  parts.push(pre);
  detail.replaceChildren(...parts);
  for (const tr of $('events').tBodies[0].rows) tr.setAttribute('aria-selected', String(Number(tr.dataset.lsn) === entry.lsn));
}

function sparkline(counts) {
  // One interval is drawn as a flat line.
  const values = counts.length === 1 ? [counts[0], counts[0]] : counts;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', '0 0 120 24');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `accepted per interval: ${counts.join(', ')}`);
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? 120 / (values.length - 1) : 0;
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', values.map((v, i) => `${(i * step).toFixed(1)},${(23 - (v / max) * 22).toFixed(1)}`).join(' '));
  svg.append(line);
  return svg;
}

async function refreshRates() {
  try {
    const response = await api('/admin/debugger/rates');
    if (response.ok) showRates(await response.json());
  } catch {
    // The next refresh tries again.
  }
  setTimeout(refreshRates, 5000);
}

function showRates(rates) {
  const interval = rates.interval_secs;
  const perSecond = (values, last) => {
    const window = values.slice(-last);
    if (!window.length) return '–';
    const sum = window.reduce((a, b) => a + b, 0);
    return (sum / (window.length * interval)).toFixed(1);
  };
  const both = (values) => (values.length ? `${perSecond(values, 60 / interval)} · ${perSecond(values, 300 / interval)}` : '…');
  const rows = state.sources.map((source) => {
    const r = rates.sources[source.name];
    const tr = document.createElement('tr');
    if (!r) return tr;
    const rejected = Object.values(r.rejected).reduce((sum, values) => sum.map((v, i) => v + (values[i] ?? 0)), r.accepted.map(() => 0));
    const reasons = Object.entries(r.rejected).map(([code, values]) => `${code}: ${values.reduce((a, b) => a + b, 0)}`).join(', ');
    const rejectedCell = cell(both(rejected), 'num');
    if (reasons) rejectedCell.title = `in 5 minutes, by reason — ${reasons}`;
    const spark = document.createElement('td');
    spark.append(sparkline(r.accepted));
    tr.append(cell(source.name), cell(source.tracking_plan ?? 'none'), cell(both(r.accepted), 'num'), rejectedCell,
      cell(both(r.suppressed), 'num'), cell(both(r.duplicates), 'num'), cell(both(r.violating), 'num'), cell(both(r.blocked), 'num'), spark);
    return tr;
  });
  $('rates').tBodies[0].replaceChildren(...rows);
  $('rates').dataset.intervals = String(rates.ends.length);
}

function togglePause() {
  state.paused = !state.paused;
  $('pause').setAttribute('aria-pressed', String(state.paused));
  $('pause').textContent = state.paused ? 'Resume' : 'Pause';
  if (!state.paused) {
    state.waiting = 0;
    render();
  } else {
    showCounts();
  }
}

function moveSelection(by) {
  const rows = [...$('events').tBodies[0].rows];
  if (!rows.length) return;
  const at = rows.findIndex((tr) => tr === document.activeElement);
  const next = rows[Math.max(0, Math.min(rows.length - 1, at < 0 ? 0 : at + by))];
  next.focus();
}

document.addEventListener('DOMContentLoaded', () => {
  $('token').value = state.token;
  $('connect').addEventListener('submit', (submit) => {
    submit.preventDefault();
    state.token = $('token').value.trim();
    connect();
  });
  $('source').addEventListener('change', () => watch($('source').value));
  for (const id of ['type', 'event', 'user', 'anonymous', 'violations-only']) $(id).addEventListener('input', render);
  $('filters').addEventListener('submit', (submit) => submit.preventDefault());
  $('pause').addEventListener('click', togglePause);
  $('clear').addEventListener('click', () => {
    state.events = [];
    state.dropped = 0;
    render();
  });
  document.addEventListener('keydown', (key) => {
    const typing = ['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement?.tagName);
    if (key.key === 'Escape') {
      state.selected = null;
      $('detail').replaceChildren(Object.assign(document.createElement('p'), { className: 'hint', textContent: 'Select an event to see it as stored.' }));
      render();
    } else if (typing || $('main').hidden) {
      return;
    } else if (key.key === 'p') {
      togglePause();
    } else if (key.key === '/') {
      key.preventDefault();
      $('event').focus();
    } else if (key.key === 'ArrowDown' || key.key === 'ArrowUp') {
      key.preventDefault();
      moveSelection(key.key === 'ArrowDown' ? 1 : -1);
    }
  });
  if (state.token) connect();
});
