// envsync admin page: System > Synchronization. Plain JavaScript, no build step; it talks to
// the REST API of docs/API.md with the session cookie and the CSRF token.

const $ = (selector, root = document) => root.querySelector(selector);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, '');
    else if (value !== false && value != null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child != null) node.append(child instanceof Node ? child : document.createTextNode(child));
  }
  return node;
};
const thousands = (n) => Number(n).toLocaleString('en-US');
const enc = (part) => encodeURIComponent(String(part));

const CONFLICT_TEXT = {
  key_clash: 'its natural key exists on the target under another ID',
  modified_deleted: 'changed on the source, deleted on the target',
  id_collision: 'the same ID names two different records',
  both_modified: 'both sides changed it since the last sync',
  deleted_modified: 'deleted on the source, changed on the target',
};
const REASON_TEXT = {
  target_deleted: (c) => `deleted on ${c.to} since the last sync: syncing would bring it back`,
  target_changed: (c) => `changed only on ${c.to}: syncing would revert it`,
  target_only: (c) => `nothing shows it was ever on ${c.from}`,
};
const RESOLUTION_TEXT = {
  overwrite: 'Overwrite: the source wins',
  merge: 'Merge: each side keeps the fields it changed',
  insert_as_new: 'Insert as new: give it a fresh ID on the target',
  link: 'Link: the target record with this key is the same record',
};
const TABS = ['conflicts', 'new', 'modified', 'deleted'];

const state = {
  me: null, csrf: '', modules: [], view: '',
  comparison: null, id: '', tab: 'conflicts', offset: 0, limit: 50, filter: '', loads: 0,
};

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.field = body?.error?.field;
  }
}

async function api(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    headers['X-CSRF-Token'] = state.csrf;
  }
  const response = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: method === 'GET' ? undefined : JSON.stringify(body ?? {}),
  });
  const data = await response.json().catch(() => null);
  if (response.status === 401 && path !== '/api/v1/login') {
    state.me = null;
    showLogin();
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function notice(text) {
  const box = $('#notice');
  box.textContent = text;
  box.hidden = !text;
}

function show(view) {
  state.view = view;
  for (const section of document.querySelectorAll('.view')) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll('.bar nav a')) {
    link.classList.toggle('active', link.dataset.view === view);
    if (link.dataset.view === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

// ---- login ------------------------------------------------------------------------------

function showLogin() {
  $('#bar').hidden = true;
  show('login');
  $('#login-email').focus();
}

async function login(event) {
  event.preventDefault();
  const error = $('#login-error');
  error.hidden = true;
  try {
    const session = await api('POST', '/api/v1/login', {
      email: $('#login-email').value, password: $('#login-password').value,
    });
    $('#login-password').value = '';
    await begin(session);
  } catch (e) {
    error.textContent = e.status === 429 ? e.message : 'Wrong e-mail or password.';
    if (e.status !== 401 && e.status !== 429) error.textContent = e.message;
    error.hidden = false;
  }
}

async function begin(session) {
  state.me = session;
  state.csrf = session.csrf_token;
  $('#who').textContent = `${session.email} (${session.role})`;
  $('#bar').hidden = false;
  document.body.dataset.role = session.role;
  for (const node of document.querySelectorAll('[data-needs-operator]')) node.hidden = session.role === 'viewer';
  state.modules = (await api('GET', '/api/v1/modules')).modules;
  renderModules();
  fillZones();
  refreshUnread();
  route();
}

async function logout() {
  try { await api('POST', '/api/v1/logout', {}); } catch (e) { /* the session may be gone */ }
  state.me = null;
  showLogin();
}

// ---- routing ----------------------------------------------------------------------------

function route() {
  if (!state.me) return showLogin();
  notice('');
  const [, view, id] = location.hash.split('/');
  // IDs go into request paths: only an ID's own characters are accepted.
  if (view === 'review' && id && /^[A-Za-z0-9_-]+$/.test(id)) return openReview(id);
  if (view === 'review') return state.id ? openReview(state.id) : openLatestReview();
  if (view === 'messages') return openMessages();
  if (view === 'history') return openHistory();
  return openStart();
}

// ---- start ------------------------------------------------------------------------------

function direction() {
  const [from, to] = document.querySelector('input[name=direction]:checked').value.split('>');
  return { from, to };
}

function renderModules() {
  const list = $('#module-list');
  list.replaceChildren(...state.modules.map((m) => el('label', { class: 'choice' },
    el('input', { type: 'checkbox', name: 'module', value: m.name, checked: true,
                  onchange: modulesChanged }),
    el('span', {}, m.name.replace('_', ' ')), el('span', { class: 'muted', text: m.description || '' }))));
  modulesChanged();
}

function moduleBox(name) { return document.querySelector(`input[name=module][value="${name}"]`); }

function modulesChanged() {
  const boxes = [...document.querySelectorAll('input[name=module]')];
  const system = moduleBox('system_config');
  const gallery = moduleBox('gallery');
  const forced = system?.checked && gallery;
  const note = $('#forced-note');
  if (forced) {
    if (!gallery.checked) {
      gallery.checked = true;
      loadFolders().then(() => tickFolder('mobile_app'));
    }
    gallery.disabled = true;
    note.textContent = 'System config is on, so Gallery is on too, with the mobile_app folder: ' +
      'the mobile-app JSONs name images in that folder, and they must travel together.';
    note.hidden = false;
  } else if (gallery) {
    gallery.disabled = false;
    note.hidden = true;
  }
  $('#modules-all').checked = boxes.every((b) => b.checked);
  const showFolders = gallery?.checked;
  $('#folder-box').hidden = !showFolders;
  if (showFolders) loadFolders();
}

// The folder tree of the source side, loaded once per direction.
let foldersLoading = null;
function loadFolders() {
  const { from } = direction();
  if (!foldersLoading || foldersLoading.from !== from) {
    foldersLoading = { from, promise: renderFolders(from) };
  }
  return foldersLoading.promise;
}

async function renderFolders(from) {
  const { folders } = await api('GET', `/api/v1/environments/${enc(from)}/folders`);
  const root = { children: new Map() };
  for (const path of folders) {
    let node = root;
    for (const part of path.split('/')) {
      if (!node.children.has(part)) node.children.set(part, { children: new Map() });
      node = node.children.get(part);
    }
    node.path = path;
  }
  const render = (node) => el('ul', {}, [...node.children.entries()].map(([name, child]) => el('li', {},
    child.path ? el('label', { class: 'choice' },
      el('input', { type: 'checkbox', name: 'folder', value: child.path, onchange: foldersChanged }), name)
      : el('span', { text: name }),
    child.children.size ? render(child) : null)));
  $('#folder-tree').replaceChildren(render(root));
}

function tickFolder(path) {
  const box = document.querySelector(`input[name=folder][value="${path}"]`);
  if (box) box.checked = true;
}

function foldersChanged() {
  // With System config on, mobile_app stays in whenever folders are picked.
  if (moduleBox('system_config')?.checked && document.querySelector('input[name=folder]:checked')) {
    tickFolder('mobile_app');
  }
}

async function openStart() {
  show('start');
  const list = $('#comparison-list');
  try {
    const { comparisons } = await api('GET', '/api/v1/comparisons');
    list.replaceChildren(...comparisons.slice(0, 10).map((c) => el('li', {},
      el('a', { href: `#/review/${c.comparison_id}`, text: `${c.from} → ${c.to}, ${c.created_at}` }),
      ` — ${c.counts.conflicts} conflicts, ${c.counts.new} new, ${c.counts.modified} modified, ${c.counts.deleted} deleted`)));
    if (!comparisons.length) list.replaceChildren(el('li', { class: 'muted', text: 'None yet.' }));
  } catch (e) { list.replaceChildren(el('li', { class: 'error', text: e.message })); }
}

async function startCompare(event) {
  event.preventDefault();
  const error = $('#start-error');
  error.hidden = true;
  const { from, to } = direction();
  const modules = [...document.querySelectorAll('input[name=module]:checked')].map((b) => b.value);
  if (!modules.length) {
    error.textContent = 'Pick at least one module.';
    error.hidden = false;
    return;
  }
  const folders = $('#folder-box').hidden ? []
    : [...document.querySelectorAll('input[name=folder]:checked')].map((b) => b.value);
  const mode = document.querySelector('input[name=mode]:checked').value;
  const button = $('#start-button');
  button.disabled = true;
  try {
    const job = await api('POST', '/api/v1/comparisons', { from, to, mode, modules, folders });
    const done = await followCompare(job.job_id, modules);
    if (done.state !== 'succeeded') throw new Error(done.error || `the comparison ${done.state}`);
    location.hash = `#/review/${done.result.comparison_id}`;
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function followCompare(jobId, modules) {
  const box = $('#compare-progress');
  const bar = $('#compare-bar');
  const count = $('#compare-count');
  box.hidden = false;
  bar.value = 0;
  const tables = state.modules.filter((m) => modules.includes(m.name)).flatMap((m) => m.tables);
  const started = performance.now();
  for (;;) {
    const job = await api('GET', `/api/v1/jobs/${enc(jobId)}`);
    if (job.progress) {
      const at = Math.max(0, tables.indexOf(job.progress.table));
      bar.value = Math.min(99, Math.round(100 * (at + 0.5) / Math.max(1, tables.length)));
      const seconds = (performance.now() - started) / 1000;
      count.textContent = `${thousands(job.progress.records)} records compared (${job.progress.table}), ` +
        `${thousands(Math.round(job.progress.records / Math.max(seconds, 0.001)))} records/s`;
    }
    if (['succeeded', 'failed', 'cancelled'].includes(job.state)) {
      bar.value = 100;
      if (job.result?.counts) {
        const c = job.result.counts;
        count.textContent = `Done: ${c.conflicts} conflicts, ${c.new} new, ${c.modified} modified, ${c.deleted} deleted.`;
      }
      return job;
    }
    if (job.state === 'queued') count.textContent = 'Waiting to start…';
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

// ---- review -----------------------------------------------------------------------------

async function openLatestReview() {
  const { comparisons } = await api('GET', '/api/v1/comparisons');
  if (!comparisons.length) {
    notice('No comparison yet: start one first.');
    return openStart();
  }
  return openReview(comparisons[0].comparison_id);
}

async function openReview(id) {
  show('review');
  if (state.id !== id) {
    state.id = id;
    state.tab = null;
    state.offset = 0;
    state.filter = '';
    $('#filter').value = '';
  }
  await loadPage();
}

async function loadPage() {
  // Only the newest request renders; the panel is aria-busy until it has.
  const seq = ++state.loads;
  const panel = $('#tabpanel');
  panel.setAttribute('aria-busy', 'true');
  let page;
  try {
    const tab = state.tab || 'conflicts';
    page = await api('GET', `/api/v1/comparisons/${enc(state.id)}?tab=${tab}` +
      `&offset=${state.offset}&limit=${state.limit}&filter=${encodeURIComponent(state.filter)}`);
  } catch (e) {
    if (seq === state.loads) panel.setAttribute('aria-busy', 'false');
    notice(e.message);
    return;
  }
  if (seq !== state.loads) return;
  if (!state.tab) {
    // Open on the first tab that has records.
    const first = TABS.find((t) => page.counts[t] > 0) || 'conflicts';
    state.tab = first;
    if (first !== 'conflicts') return loadPage();
  }
  state.comparison = page;
  $('#direction').textContent = `${page.from} → ${page.to}`;
  const forced = page.forced.map((f) => `${f.module} (required by ${f.required_by})`).join(', ');
  $('#review-meta').textContent = `Comparison ${page.comparison_id}, ${page.created_at}, ` +
    `mode ${page.mode}, ${thousands(page.records_compared)} records compared` +
    (forced ? `. Forced: ${forced}` : '') + '.';
  for (const t of TABS) {
    const button = $(`#tab-${t}`);
    $('.count', button).textContent = `(${thousands(page.counts[t])})`;
    button.setAttribute('aria-selected', String(t === state.tab));
    button.tabIndex = t === state.tab ? 0 : -1;
  }
  $('#tabpanel').setAttribute('aria-labelledby', `tab-${state.tab}`);
  const selectTab = $('#select-tab');
  selectTab.disabled = state.tab === 'conflicts' || state.me.role === 'viewer';
  selectTab.title = state.tab === 'conflicts' ? 'Each conflict needs its own resolution' : '';
  selectTab.checked = page.changes.length > 0 && page.changes.every((c) => c.selected);
  const last = Math.min(page.total, state.offset + page.changes.length);
  $('#page-info').textContent = page.total ? `${thousands(state.offset + 1)}–${thousands(last)} of ${thousands(page.total)}` : 'No records';
  $('#prev-page').disabled = state.offset === 0;
  $('#next-page').disabled = last >= page.total;
  $('#changes').replaceChildren(...page.changes.map(renderChange));
  panel.setAttribute('aria-busy', 'false');
}

function fitting(change) {
  switch (change.conflict) {
    case 'key_clash': return ['link'];
    case 'id_collision': return ['insert_as_new', 'overwrite'];
    case 'both_modified': return change.mergeable ? ['merge', 'overwrite'] : ['overwrite'];
    default: return ['overwrite'];
  }
}

function renderChange(change) {
  const page = state.comparison;
  const readOnly = state.me.role === 'viewer';
  const id = `chg-${change.ref.replace(/[^A-Za-z0-9]/g, '-')}`;
  const box = el('input', { type: 'checkbox', id, checked: change.selected, disabled: readOnly || !!change.conflict,
                            'aria-label': `Synchronize ${change.ref}`, onchange: () => toggle(change, box.checked) });
  const reason = change.conflict
    ? el('span', { class: 'reason conflict', text: `${change.conflict.replace('_', ' ')}: ${CONFLICT_TEXT[change.conflict]}` +
        (change.mergeable ? ' (they changed different fields: mergeable)' : '') })
    : change.reason ? el('span', { class: 'reason', text: REASON_TEXT[change.reason](page) }) : null;
  const head = el('div', { class: 'change-head' }, box,
    el('label', { for: id }, el('span', { class: 'ref', text: change.ref }), ' ', el('strong', { text: change.key })),
    el('span', { class: 'muted', text: change.module }), reason);
  const item = el('li', { class: 'change', 'data-ref': change.ref }, head);
  if (change.conflict) {
    const select = el('select', { 'aria-label': `Resolution for ${change.ref}`, disabled: readOnly,
                                  onchange: () => resolve(change, select.value) },
      el('option', { value: '', text: 'Leave it out' }),
      fitting(change).map((how) => el('option', { value: how, text: RESOLUTION_TEXT[how], selected: change.resolution === how })));
    item.append(el('div', { class: 'details' }, select));
  }
  if (change.required_by?.length) {
    item.append(el('div', { class: 'required details' }, 'Required by ',
      change.required_by.map((ref, i) => [i ? ', ' : '', el('a', { href: '#', text: ref,
        onclick: (e) => { e.preventDefault(); findRecord(ref); } })])));
  }
  const details = el('details', { class: 'details' }, el('summary', { text: 'Show the differences' }));
  details.addEventListener('toggle', () => { if (details.open && details.childElementCount === 1) renderDiff(change, details); }, { once: false });
  item.append(details);
  return item;
}

function findRecord(ref) {
  // The record is on another tab, or on this one: filter every tab for it.
  state.filter = ref;
  $('#filter').value = ref;
  state.offset = 0;
  (async () => {
    for (const t of TABS) {
      const page = await api('GET', `/api/v1/comparisons/${enc(state.id)}?tab=${t}&limit=1&filter=${encodeURIComponent(ref)}`);
      if (page.total) { state.tab = t; break; }
    }
    loadPage();
  })();
}

function asText(value) {
  if (value === null || value === undefined) return '';
  return typeof value === 'string' ? value : JSON.stringify(value, null, 1);
}

// Word-level differences between two texts: <del> for words only in `a`, <ins> for words only
// in `b`. Long texts fall back to marking the whole value.
function wordDiff(a, b) {
  const x = a.split(/(\s+)/);
  const y = b.split(/(\s+)/);
  if (x.length * y.length > 4e6) return [el('del', { text: a }), el('ins', { text: b })];
  const n = x.length, m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { out.push(x[i]); i++; j++; }
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) { out.push(el('ins', { text: y[j] })); j++; }
    else { out.push(el('del', { text: x[i] })); i++; }
  }
  return out;
}

function renderDiff(change, details) {
  const page = state.comparison;
  if (change.table === 'gallery_files') {
    const img = (env, label) => el('figure', {},
      el('img', { src: `/api/v1/environments/${enc(env)}/gallery?path=${encodeURIComponent(change.key)}`,
                  alt: `${change.key} on ${env}`, loading: 'lazy' }),
      el('figcaption', { class: 'muted', text: label }));
    details.append(el('div', { class: 'thumbs' },
      change.source_id !== null ? img(page.from, `${page.from} (source)`) : null,
      change.target_id !== null ? img(page.to, `${page.to} (target)`) : null));
  }
  if (!change.fields.length) {
    details.append(el('p', { class: 'muted', text: change.source_id === null
      ? `Only on ${page.to}: syncing deletes it there.` : `Only on ${page.from}: syncing adds it to ${page.to}.` }));
    return;
  }
  const rows = change.fields.map((f) => {
    const source = asText(f.source), target = asText(f.target);
    const long = source.length + target.length > 80;
    return el('tr', {},
      el('th', { scope: 'row', text: f.field }),
      el('td', {}, long ? wordDiff(target, source) : source),
      el('td', {}, target),
      el('td', {}, f.base_known ? asText(f.base) : el('span', { class: 'muted', text: 'unknown' })));
  });
  details.append(el('div', { class: 'scroll' }, el('table', { class: 'diff' },
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Field' }),
      el('th', { scope: 'col', text: `${page.from} (source)` }), el('th', { scope: 'col', text: `${page.to} (target)` }),
      el('th', { scope: 'col', text: 'Last common (base)' }))),
    el('tbody', {}, rows))));
}

async function patchSelection(body) {
  try {
    await api('PATCH', `/api/v1/comparisons/${enc(state.id)}/selection`, body);
    return true;
  } catch (e) {
    notice(e.message);
    return false;
  }
}

async function toggle(change, selected) {
  change.selected = selected;
  await patchSelection(selected ? { select: [change.ref] } : { deselect: [change.ref] });
}

async function resolve(change, how) {
  await patchSelection(how ? { resolve: { [change.ref]: how } } : { deselect: [change.ref] });
  await loadPage();
}

async function selectTab(event) {
  try {
    await api('POST', `/api/v1/comparisons/${enc(state.id)}/select-tab`,
      { tab: state.tab, selected: event.target.checked, filter: state.filter });
  } catch (e) { notice(e.message); }
  await loadPage();
}

// ---- schedule ---------------------------------------------------------------------------

function fillZones() {
  const select = $('#run-zone');
  const zones = Intl.supportedValuesOf ? Intl.supportedValuesOf('timeZone') : [];
  const mine = state.me.time_zone || 'UTC';
  const all = [...new Set([mine, 'UTC', ...zones])];
  select.replaceChildren(...all.map((z) => el('option', { value: z, text: z, selected: z === mine })));
  // The next full hour at least an hour from now.
  const soon = new Date(Math.ceil((Date.now() + 3600e3) / 3600e3) * 3600e3);
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone: mine, year: 'numeric', month: '2-digit',
    day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(soon).map((p) => [p.type, p.value]));
  $('#run-date').value = `${parts.year}-${parts.month}-${parts.day}`;
  $('#run-time').value = `${parts.hour}:${parts.minute}`;
}

async function schedule(now) {
  const result = $('#schedule-result');
  const body = { comparison_id: state.id, test_import: $('#test-import').checked };
  if (!now) {
    body.run_at = `${$('#run-date').value}T${$('#run-time').value}`;
    body.time_zone = $('#run-zone').value;
  }
  result.className = '';
  try {
    const job = await api('POST', '/api/v1/syncs', body);
    if (!now) {
      result.textContent = `Scheduled for ${job.run_at_local} (job ${job.job_id}). You can cancel it from Messages until it starts.`;
      refreshUnread();
      return;
    }
    result.textContent = `Synchronizing (job ${job.job_id})…`;
    let done = job;
    while (!['succeeded', 'failed', 'cancelled'].includes(done.state)) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      done = await api('GET', `/api/v1/jobs/${enc(job.job_id)}`);
    }
    const a = done.result?.applied || {};
    result.textContent = done.state === 'succeeded'
      ? `Success${body.test_import ? ' (test import: nothing was saved)' : ''}: ${a.new} new, ${a.modified} modified, ${a.deleted} deleted. Details in Messages.`
      : `FAILURE: ${done.error}`;
    result.className = done.state === 'succeeded' ? 'status-success' : 'status-failure';
    refreshUnread();
  } catch (e) {
    result.textContent = e.message;
    result.className = 'error';
  }
}

// ---- messages and history ---------------------------------------------------------------

async function refreshUnread() {
  if (!state.me) return;
  try {
    const { unread } = await api('GET', '/api/v1/messages');
    $('#unread').textContent = unread;
  } catch (e) { /* shown elsewhere */ }
}

async function openMessages() {
  show('messages');
  const { messages, unread } = await api('GET', '/api/v1/messages');
  $('#unread').textContent = unread;
  const list = $('#message-list');
  list.replaceChildren(...messages.map((m) => {
    const kind = m.title.startsWith('Success') ? 'success' : m.title.startsWith('FAILURE') ? 'failure' : '';
    const item = el('li', { class: `message ${kind} ${m.read ? '' : 'unread'}`, 'data-id': m.id },
      el('h2', { text: m.title }), el('p', { class: 'muted', text: new Date(m.created_at).toLocaleString() }),
      el('p', { text: m.body }));
    const actions = el('div', { class: 'row' });
    for (const action of m.actions) {
      if (action.action === 'cancel' && state.me.role !== 'viewer') {
        actions.append(el('button', { type: 'button', class: 'danger', text: 'Cancel', onclick: async () => {
          try { await api('POST', action.href, {}); } catch (e) { notice(e.message); }
          openMessages();
        } }));
      }
    }
    if (!m.read) {
      actions.append(el('button', { type: 'button', text: 'Mark read', onclick: async () => {
        await api('POST', `/api/v1/messages/${enc(m.id)}/read`, {});
        openMessages();
      } }));
    }
    item.append(actions);
    return item;
  }));
  if (!messages.length) list.replaceChildren(el('li', { class: 'muted', text: 'No messages.' }));
}

async function openHistory() {
  show('history');
  const { syncs } = await api('GET', '/api/v1/history');
  const body = $('#history-table tbody');
  body.replaceChildren(...syncs.map((s) => el('tr', {},
    el('td', { class: 'ref', text: s.sync_id }), el('td', { text: `${s.from} → ${s.to}` }),
    el('td', { text: new Date(s.started_at).toLocaleString() }), el('td', { text: s.started_by }),
    el('td', { class: `status-${s.status}`, text: s.status + (s.test_import ? ' (test import)' : '') + (s.error ? `: ${s.error}` : '') }),
    el('td', { text: `${s.applied.new ?? 0} / ${s.applied.modified ?? 0} / ${s.applied.deleted ?? 0}` }),
    el('td', {}, s.status === 'success' && !s.test_import && state.me.role !== 'viewer'
      ? el('button', { type: 'button', text: 'Undo', 'aria-label': `Undo ${s.sync_id}`, onclick: async () => {
          if (!confirm(`Undo sync ${s.sync_id}? ${s.to} gets back what it had before it.`)) return;
          try {
            const undone = await api('POST', `/api/v1/syncs/${enc(s.sync_id)}/undo`, {});
            notice(`Undid ${undone.sync_id}.`);
          } catch (e) { notice(e.message); }
          openHistory();
        } })
      : null))));
  if (!syncs.length) body.replaceChildren(el('tr', {}, el('td', { colspan: 7, class: 'muted', text: 'No syncs yet.' })));
}

// ---- wiring -----------------------------------------------------------------------------

function wire() {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  $('#start-form').addEventListener('submit', startCompare);
  $('#modules-all').addEventListener('change', (e) => {
    for (const box of document.querySelectorAll('input[name=module]')) box.checked = e.target.checked;
    modulesChanged();
  });
  for (const radio of document.querySelectorAll('input[name=direction]')) {
    radio.addEventListener('change', () => modulesChanged());
  }
  const tabs = $('#tabs');
  tabs.addEventListener('click', (e) => {
    const button = e.target.closest('[role=tab]');
    if (!button || (button.dataset.tab === state.tab && state.comparison)) return;
    state.tab = button.dataset.tab;
    state.offset = 0;
    loadPage();
  });
  tabs.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const at = TABS.indexOf(state.tab) + (e.key === 'ArrowRight' ? 1 : -1);
    state.tab = TABS[(at + TABS.length) % TABS.length];
    state.offset = 0;
    loadPage().then(() => $(`#tab-${state.tab}`).focus());
  });
  let timer = 0;
  $('#filter').addEventListener('input', (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.filter = e.target.value.trim(); state.offset = 0; loadPage(); }, 250);
  });
  $('#prev-page').addEventListener('click', () => { state.offset = Math.max(0, state.offset - state.limit); loadPage(); });
  $('#next-page').addEventListener('click', () => { state.offset += state.limit; loadPage(); });
  $('#select-tab').addEventListener('change', selectTab);
  $('#schedule-button').addEventListener('click', () => schedule(false));
  $('#now-button').addEventListener('click', () => schedule(true));
  window.addEventListener('hashchange', route);
  setInterval(refreshUnread, 10000);
}

async function main() {
  wire();
  try {
    await begin(await api('GET', '/api/v1/session'));
  } catch (e) {
    showLogin();
  }
}

main();
