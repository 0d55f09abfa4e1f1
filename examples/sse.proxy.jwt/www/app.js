// The page of zilla's sse.proxy.jwt example: an EventSource on /events with the token in the
// query (an EventSource cannot set headers), the events as they arrive, the connection's
// state, and the answer to zilla's challenge: a POST with the renewed token and
// `content-type: application/x-challenge-response` on the same HTTP/2 connection, which zilla
// answers 204 and uses to keep the stream past the old token's expiry.
'use strict';

const $ = (id) => document.getElementById(id);
let source = null;
let token = '';
let urlToken = '';
let failures = 0;

function claims(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4)));
  } catch (e) {
    return {};
  }
}

function expiry(jwt) {
  const exp = claims(jwt).exp;
  return typeof exp === 'number' ? new Date(exp * 1000) : null;
}

function status(state, why) {
  $('status').dataset.state = state;
  $('state').textContent = state;
  $('why').textContent = why ? '— ' + why : '';
  const exp = expiry(token);
  $('expires').textContent = exp ? exp.toISOString() : 'never (no exp)';
}

function row(id, type, data) {
  const tr = document.createElement('tr');
  tr.className = type;
  for (const text of [new Date().toISOString().slice(11, 23), id, type, data]) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.appendChild(td);
  }
  $('events').querySelector('tbody').appendChild(tr);
}

async function renew(challenge) {
  const fresh = $('renew').value.trim() || token;
  const headers = Object.assign({}, challenge.headers || {}, { authorization: 'Bearer ' + fresh });
  try {
    const answer = await fetch('/events', { method: challenge.method || 'POST', headers });
    if (answer.status === 204) {
      token = fresh;
      status('open', 'renewed: the stream goes on');
    } else {
      status('open', 'renewal refused (' + answer.status + '): the stream ends when the token expires');
    }
  } catch (e) {
    status('open', 'renewal failed: ' + e);
  }
}

function connect() {
  disconnect();
  token = $('token').value.trim();
  urlToken = token;
  failures = 0;
  source = new EventSource('/events?access_token=' + encodeURIComponent(token));
  status('connecting', '');
  source.onopen = () => { failures = 0; status('open', ''); };
  source.onmessage = (e) => row(e.lastEventId, e.type, e.data);
  source.addEventListener('challenge', (e) => {
    row(e.lastEventId, 'challenge', e.data);
    let challenge = {};
    try { challenge = JSON.parse(e.data); } catch (err) { /* answer with the defaults */ }
    renew(challenge);
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // Renewed since the stream opened: its URL still holds the old token, open it anew.
      if (token && token !== urlToken) {
        $('token').value = token;
        connect();
        return;
      }
      // An EventSource gives up on an HTTP error: zilla refused the stream.
      const exp = expiry(token);
      if (exp && exp.getTime() <= Date.now()) {
        status('closed', 'refused: the token expired (' + exp.toISOString() + '); paste a fresh one');
      } else if (!token) {
        status('closed', 'refused: no token');
      } else {
        status('closed', 'refused: the token is not valid here, or lacks the role proxy:stream');
      }
      return;
    }
    failures += 1;
    if (failures >= 3) {
      status('connecting', 'the stream keeps ending: is the backend gone? reconnecting');
    } else {
      status('connecting', 'the stream ended: reconnecting with the last event id');
    }
  };
}

function disconnect() {
  if (source) {
    source.close();
    source = null;
    status('idle', 'disconnected');
  }
}

$('connect').addEventListener('submit', (e) => { e.preventDefault(); connect(); });
$('disconnect').addEventListener('click', disconnect);

// `#token=...&renew=...` fills the form and connects (cargo xtask demo jwt prints such links).
const params = new URLSearchParams(location.hash.slice(1));
if (params.get('token')) {
  $('token').value = params.get('token');
  $('renew').value = params.get('renew') || '';
  connect();
}
