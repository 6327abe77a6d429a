// The pg_oauth console. Signs in with an access token (got here with the client-credentials
// grant, or pasted) kept in this page's memory only, and calls /console/api/<action> with it
// as a Bearer token: no cookie, nothing stored. Every value from the server is written with
// textContent, never as markup. After an action its list is read again before the message
// says it is done, so what the message reports is what the list shows.
'use strict';

const $ = (id) => document.getElementById(id);
let token = null;
let poll = null;
const samples = [];   // {t, issued, latency: {le: count}} of the last 60 polls
const MAX_SAMPLES = 60;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function say(text, ok) {
  const message = $('message');
  message.textContent = text;
  message.className = ok ? 'ok' : 'bad';
}

function when(ts) {
  return ts ? new Date(ts).toLocaleString() : '';
}

async function api(action, args) {
  const response = await fetch('/console/api/' + action, {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: JSON.stringify(args || {}),
    credentials: 'omit',
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    signOut('Your token is no longer accepted: sign in again.');
  }
  if (!response.ok) {
    throw new Error(body.error_description || body.error || ('HTTP ' + response.status));
  }
  return body;
}

// RFC 6749 §2.3.1: client id and secret form-urlencoded before Basic.
function basic(id, secret) {
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  const bytes = new TextEncoder().encode(enc(id) + ':' + enc(secret));
  return 'Basic ' + btoa(String.fromCharCode(...bytes));
}

async function signIn(event) {
  event.preventDefault();
  const status = $('signin-status');
  status.className = '';
  status.textContent = 'Signing in…';
  try {
    let candidate = $('signin-token').value.trim();
    if (!candidate) {
      const response = await fetch('/token', {
        method: 'POST',
        headers: {
          'Authorization': basic($('signin-client').value.trim(), $('signin-secret').value),
          'Content-Type': 'application/x-www-form-urlencoded',
        },
        body: 'grant_type=client_credentials',
        // A 401 with WWW-Authenticate must not raise the browser's own login prompt.
        credentials: 'omit',
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(body.error_description || body.error || ('HTTP ' + response.status));
      candidate = body.access_token;
    }
    token = candidate;
    const who = await api('whoami');
    $('signin-secret').value = '';
    $('signin-token').value = '';
    $('whoami').textContent = 'Signed in as ' + who.client_id + ', acting as role ' + who.role + '.';
    $('signin').hidden = true;
    $('workspace').hidden = false;
    status.textContent = '';
    show('overview');
    startPolling();
  } catch (err) {
    token = null;
    status.className = 'bad';
    status.textContent = 'Not signed in: ' + err.message;
  }
}

function signOut(why) {
  token = null;
  if (poll) clearInterval(poll);
  poll = null;
  samples.length = 0;
  $('workspace').hidden = true;
  $('signin').hidden = false;
  const status = $('signin-status');
  status.className = why ? 'bad' : '';
  status.textContent = why || 'Signed out.';
}

function show(tab) {
  for (const button of document.querySelectorAll('nav button')) {
    button.setAttribute('aria-pressed', String(button.dataset.tab === tab));
  }
  for (const panel of document.querySelectorAll('[data-panel]')) {
    panel.hidden = panel.id !== 'tab-' + tab;
  }
  say('', true);
  const load = { clients: loadClients, sessions: loadSessions, keys: loadKeys, audit: loadAudit }[tab];
  if (load) load().catch((err) => say(err.message));
}

// ---- Overview: counters, polled ----

function sum(rows, metric, match) {
  return rows
    .filter((r) => r.metric === metric && (!match || match(r.labels)))
    .reduce((total, r) => total + Number(r.value), 0);
}

// The listener's OAuth endpoints, not the console's or the sandbox's own requests.
const OAUTH_PATHS = ['token', 'revoke', 'introspect', 'jwks', 'metadata'];

function buckets(rows) {
  const byLe = {};
  for (const r of rows) {
    if (r.metric === 'http_request_duration_seconds_bucket' && OAUTH_PATHS.includes(r.labels.path)) {
      byLe[r.labels.le] = (byLe[r.labels.le] || 0) + Number(r.value);
    }
  }
  return byLe;
}

// The upper bound (ms) of the bucket holding quantile q of the requests between two polls.
function quantile(now, before, q) {
  const les = Object.keys(now).filter((le) => le !== '+Inf').map(Number).sort((a, b) => a - b);
  const count = (le) => (now[le] || 0) - ((before && before[le]) || 0);
  const total = count('+Inf');
  if (total <= 0) return null;
  for (const le of les) {
    if (count(String(le)) >= q * total) return le * 1000;
  }
  return Infinity;
}

function line(svg, values, cls, max) {
  // The newest sample at the right edge.
  const points = values.map((v, i) => {
    const x = 600 - ((values.length - 1 - i) / (MAX_SAMPLES - 1)) * 600;
    const y = 118 - (max > 0 ? (Math.min(v, max) / max) * 112 : 0);
    return x.toFixed(1) + ',' + y.toFixed(1);
  });
  const poly = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  poly.setAttribute('points', points.join(' '));
  poly.setAttribute('class', cls);
  svg.appendChild(poly);
}

function chart(svg, series) {
  svg.replaceChildren();
  const max = Math.max(1, ...series.flatMap((s) => s.values.filter(Number.isFinite)));
  for (const y of [6, 62, 118]) {
    const grid = document.createElementNS('http://www.w3.org/2000/svg', 'line');
    grid.setAttribute('x1', '0'); grid.setAttribute('x2', '600');
    grid.setAttribute('y1', String(y)); grid.setAttribute('y2', String(y));
    svg.appendChild(grid);
  }
  for (const s of series) line(svg, s.values.map((v) => (Number.isFinite(v) ? v : 0)), s.cls, max);
  $(svg.id + '-scale').textContent = '(top line: ' + max.toFixed(max < 10 ? 1 : 0) + ')';
  svg.setAttribute('aria-label', series.map((s) => s.label + ' ' + (s.values.at(-1) ?? 0).toFixed(2)).join(', ') + '; scale 0 to ' + max.toFixed(2));
}

function refusalTable(rows) {
  const reasons = {};
  for (const r of rows) {
    let reason = null;
    if (r.metric === 'client_authentication_failures') reason = 'client authentication: ' + r.labels.reason;
    if (r.metric === 'refusals' && r.labels.error !== 'invalid_client') reason = r.labels.endpoint + ': ' + r.labels.error;
    if (reason) reasons[reason] = (reasons[reason] || 0) + Number(r.value);
  }
  const sorted = Object.entries(reasons).sort((a, b) => b[1] - a[1]);
  const top = sorted.length ? sorted[0][1] : 0;
  const body = $('refusals').tBodies[0];
  body.replaceChildren();
  for (const [reason, count] of sorted) {
    const row = el('tr');
    row.append(el('td', reason), el('td', count));
    const meter = el('meter');
    meter.max = top; meter.value = count;
    meter.setAttribute('aria-label', reason);
    const cell = el('td'); cell.append(meter); row.append(cell);
    body.append(row);
  }
  if (!sorted.length) {
    const row = el('tr'); const cell = el('td', 'None yet.'); cell.colSpan = 3; row.append(cell); body.append(row);
  }
}

async function refreshStats() {
  const rows = await api('stats');
  const issued = sum(rows, 'tokens_issued');
  const sample = { t: performance.now(), issued, latency: buckets(rows) };
  const previous = samples.at(-1);
  sample.rate = previous ? Math.max(0, (issued - previous.issued) / ((sample.t - previous.t) / 1000)) : 0;
  // Between two polls only: the first one's buckets hold everything since the server started.
  sample.p50 = previous ? quantile(sample.latency, previous.latency, 0.5) : null;
  sample.p99 = previous ? quantile(sample.latency, previous.latency, 0.99) : null;
  samples.push(sample);
  if (samples.length > MAX_SAMPLES) samples.shift();
  $('issued-total').textContent = String(issued);
  $('issued-rate').textContent = sample.rate.toFixed(1);
  const refused = sum(rows, 'refusals');
  $('refused-total').textContent = String(refused);
  $('throttled-total').textContent = String(sum(rows, 'client_authentication_failures', (l) => l.reason === 'throttled_source'));
  const ms = (v) => (v === null ? '–' : (v === Infinity ? '> 2500 ms' : v + ' ms'));
  const overall = quantile(sample.latency, null, 0.5);
  $('latency-p50').textContent = ms(sample.p50 !== null ? sample.p50 : overall);
  $('latency-p99').textContent = ms(sample.p99 !== null ? sample.p99 : quantile(sample.latency, null, 0.99));
  chart($('rate-chart'), [{ values: samples.map((s) => s.rate), cls: 'rate', label: 'tokens per second' }]);
  chart($('latency-chart'), [
    { values: samples.map((s) => s.p50 || 0), cls: 'p50', label: 'p50 ms' },
    { values: samples.map((s) => s.p99 || 0), cls: 'p99', label: 'p99 ms' },
  ]);
  refusalTable(rows);
}

// Sources refused for too many failures (oauth.source_throttle through the audit trail).
async function refreshThrottled() {
  const events = await api('audit', { event: 'source throttled' });
  const body = $('throttled').tBodies[0];
  body.replaceChildren();
  for (const e of events.slice(0, 10)) {
    const row = el('tr');
    row.append(el('td', e.detail.source, 'mono'), el('td', when(e.at)), el('td', e.detail.refused));
    body.append(row);
  }
  if (!events.length) {
    const row = el('tr'); const cell = el('td', 'None.'); cell.colSpan = 3; row.append(cell); body.append(row);
  }
}

function startPolling() {
  let ticks = 0;
  const tick = () => {
    refreshStats().catch((err) => token && say(err.message));
    // The audit trail is a heavier read than the counters: every 10 s.
    if (ticks++ % 5 === 0) refreshThrottled().catch((err) => token && say(err.message));
  };
  tick();
  poll = setInterval(tick, 2000);
}

// ---- Clients ----

function actionButton(label, onClick) {
  const button = el('button', label);
  button.type = 'button';
  button.addEventListener('click', () => onClick().catch((err) => say(err.message)));
  return button;
}

function showSecret(id, secret) {
  $('secret-client').textContent = id;
  $('secret-value').textContent = secret;
  $('secret-once').hidden = false;
  $('secret-done').focus();
}

async function loadClients() {
  const clients = await api('clients', { filter: $('clients-filter').value });
  const body = $('clients').tBodies[0];
  body.replaceChildren();
  for (const c of clients) {
    const row = el('tr');
    row.dataset.client = c.id;
    row.append(el('td', c.id, 'mono'), el('td', c.active ? 'yes' : 'no'), el('td', c.scope.join(' ')),
      el('td', c.role || ''), el('td', c.token_format), el('td', when(c.created_at)));
    const actions = el('td');
    actions.append(
      actionButton(c.active ? 'Deactivate' : 'Activate', async () => {
        await api('update_client', { id: c.id, active: !c.active });
        await loadClients();
        say((c.active ? 'Deactivated ' : 'Activated ') + c.id + '.', true);
      }),
      actionButton('Rotate secret', async () => {
        const answer = await api('rotate_secret', { id: c.id });
        showSecret(c.id, answer.client_secret);
        say('New secret for ' + c.id + '; the previous one works for one more hour.', true);
      }),
      actionButton('Edit', async () => {
        $('edit-id').textContent = c.id;
        $('edit-scope').value = c.scope.join(' ');
        $('edit-role').value = c.role || '';
        $('edit-form').hidden = false;
        $('edit-scope').focus();
      }),
      actionButton('Sessions', async () => {
        $('sessions-client').value = c.id;
        show('sessions');
      }));
    row.append(actions);
    body.append(row);
  }
}

async function createClient(event) {
  event.preventDefault();
  const id = $('create-id').value.trim();
  try {
    const answer = await api('create_client', {
      id,
      scope: $('create-scope').value,
      role: $('create-role').value,
      token_format: $('create-format').value,
    });
    showSecret(id, answer.client_secret);
    $('create-form').reset();
    await loadClients();
    say('Created ' + id + '.', true);
  } catch (err) {
    say(err.message);
  }
}

async function saveClient(event) {
  event.preventDefault();
  const id = $('edit-id').textContent;
  try {
    await api('update_client', { id, scope: $('edit-scope').value, role: $('edit-role').value });
    $('edit-form').hidden = true;
    await loadClients();
    say('Saved ' + id + '.', true);
  } catch (err) {
    say(err.message);
  }
}

// ---- Sessions ----

async function loadSessions() {
  const sessions = await api('sessions', {
    client_id: $('sessions-client').value,
    all: $('sessions-all').checked,
  });
  const body = $('sessions').tBodies[0];
  body.replaceChildren();
  for (const s of sessions) {
    const live = !s.revoked_at && new Date(s.expires_at) > new Date();
    const row = el('tr');
    row.dataset.session = s.id;
    const state = s.revoked_at ? 'revoked ' + when(s.revoked_at) + ' (' + (s.revoked_reason || '') + ')'
      : (live ? 'live' : 'expired');
    row.append(el('td', s.client_id, 'mono'), el('td', when(s.issued_at)), el('td', when(s.expires_at)),
      el('td', s.format + (s.bound ? ', bound' : '')), el('td', s.scope.join(' ')), el('td', state));
    const actions = el('td');
    if (live) {
      actions.append(actionButton('Revoke', async () => {
        const answer = await api('revoke', { session_id: s.id });
        await loadSessions();
        say('Revoked ' + answer.sessions + ' token.', true);
      }));
    }
    row.append(actions);
    body.append(row);
  }
  if (!sessions.length) {
    const row = el('tr'); const cell = el('td', 'No sessions.'); cell.colSpan = 7; row.append(cell); body.append(row);
  }
}

async function revokeClient() {
  const id = $('sessions-client').value.trim();
  if (!id) {
    say('Name the client whose tokens to revoke.');
    return;
  }
  const answer = await api('revoke', { client_id: id });
  await loadSessions();
  say('Revoked ' + answer.sessions + ' tokens and ' + answer.refresh_grants + ' refresh grants of ' + id + '.', true);
}

// ---- Keys ----

async function loadKeys() {
  const keys = await api('keys');
  const body = $('keys').tBodies[0];
  body.replaceChildren();
  for (const k of keys) {
    const row = el('tr');
    row.append(el('td', k.kid, 'mono'), el('td', k.alg), el('td', k.state), el('td', when(k.created_at)),
      el('td', when(k.activated_at)), el('td', k.state === 'retired' ? when(k.expires_at) : ''));
    body.append(row);
  }
}

async function rotateKey(event) {
  event.preventDefault();
  try {
    const answer = await api('rotate_key', { alg: $('rotate-alg').value });
    await loadKeys();
    say('Rotated: ' + answer.active_kid + ' is active.', true);
  } catch (err) {
    say(err.message);
  }
}

// ---- Audit ----

async function loadAudit() {
  const events = await api('audit', {
    client_id: $('audit-client').value,
    source: $('audit-source').value,
    event: $('audit-event').value,
  });
  const body = $('audit').tBodies[0];
  body.replaceChildren();
  for (const e of events) {
    const row = el('tr');
    row.append(el('td', when(e.at)), el('td', e.event), el('td', e.client_id || '', 'mono'),
      el('td', JSON.stringify(e.detail), 'mono'));
    body.append(row);
  }
  if (!events.length) {
    const row = el('tr'); const cell = el('td', 'No events.'); cell.colSpan = 4; row.append(cell); body.append(row);
  }
}

function submitter(load) {
  return (event) => {
    event.preventDefault();
    load().catch((err) => say(err.message));
  };
}

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', () => signOut());
  for (const button of document.querySelectorAll('nav button')) {
    button.addEventListener('click', () => show(button.dataset.tab));
  }
  $('create-form').addEventListener('submit', createClient);
  $('edit-form').addEventListener('submit', saveClient);
  $('edit-cancel').addEventListener('click', () => { $('edit-form').hidden = true; });
  $('secret-done').addEventListener('click', () => {
    $('secret-value').textContent = '';
    $('secret-once').hidden = true;
  });
  $('clients-filter').addEventListener('input', () => loadClients().catch((err) => say(err.message)));
  $('sessions-form').addEventListener('submit', submitter(loadSessions));
  $('revoke-client').addEventListener('click', () => revokeClient().catch((err) => say(err.message)));
  $('rotate-form').addEventListener('submit', rotateKey);
  $('audit-form').addEventListener('submit', submitter(loadAudit));
});
