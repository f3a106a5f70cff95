// h2_client.mjs: Node's own http2 client against busbar, for tests/integration/test_http2.py.
// Node's built-in modules only. One command per run; prints one JSON line with what it saw.
//
//   node h2_client.mjs multiplex URL MODEL N AUTH   N concurrent streamed chat completions on
//                                                   ONE session: each one's status, events,
//                                                   text, and the peak number in flight
//   node h2_client.mjs rapid URL N                  open and cancel (RST_STREAM) N streams as
//                                                   fast as possible: the GOAWAY code seen
//   node h2_client.mjs cancel URL MODEL AUTH        a streamed completion cancelled after its
//                                                   first DATA frame; the session stays open
//                                                   3 s more so the test can look at busbar
//   node h2_client.mjs headers URL BYTES            a request with BYTES of extra header: the
//                                                   status, content-type and body
//   node h2_client.mjs load URL MODEL C STOPFILE    C concurrent request loops sharing one
//                                                   session until STOPFILE exists; a GOAWAY
//                                                   (graceful) moves new requests to a new
//                                                   session; REFUSED_STREAM (not processed,
//                                                   RFC 9113 §8.7) is retried; anything else
//                                                   is a failure
import http2 from 'node:http2';
import fs from 'node:fs';

const [cmd, url, ...args] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function chatBody(model, stream) {
  return JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] });
}

// One request on session s; resolves {status, headers, body} or rejects with the stream error.
function exchange(s, path, body, headers = {}, onData = null) {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':method': body ? 'POST' : 'GET', ':path': path,
      'content-type': 'application/json', ...headers });
    let status = 0;
    let hdrs = {};
    const chunks = [];
    req.on('response', (h) => { status = h[':status']; hdrs = h; });
    req.on('data', (d) => { chunks.push(d); if (onData) onData(req, d); });
    req.on('end', () => resolve({ status, headers: hdrs, body: Buffer.concat(chunks).toString() }));
    req.on('error', (e) => reject(Object.assign(e, { rstCode: req.rstCode })));
    req.on('close', () => {
      if (req.rstCode && req.rstCode !== http2.constants.NGHTTP2_NO_ERROR && status === 0)
        reject(Object.assign(new Error('stream reset ' + req.rstCode), { rstCode: req.rstCode }));
    });
    if (body) req.end(body); else req.end();
  });
}

function sseText(body) {
  let text = '';
  let done = false;
  let events = 0;
  for (const block of body.split('\n\n')) {
    const line = block.split('\n').find((l) => l.startsWith('data: '));
    if (!line) continue;
    events++;
    const data = line.slice(6);
    if (data === '[DONE]') { done = true; continue; }
    const j = JSON.parse(data);
    text += j.choices?.[0]?.delta?.content ?? '';
  }
  return { text, done, events };
}

async function multiplex() {
  const [model, n, auth] = [args[0], Number(args[1]), args[2]];
  const s = http2.connect(url);
  s.on('error', () => {});
  let inflight = 0;
  let peak = 0;
  const one = async () => {
    inflight++;
    peak = Math.max(peak, inflight);
    try {
      const r = await exchange(s, '/v1/chat/completions', chatBody(model, true),
        auth ? { authorization: 'Bearer ' + auth } : {});
      return { status: r.status, ctype: r.headers['content-type'], ...sseText(r.body) };
    } catch (e) {
      return { error: String(e) };
    } finally {
      inflight--;
    }
  };
  const results = await Promise.all(Array.from({ length: n }, one));
  out({ results, peak, sessions: 1 });
  s.close();
}

async function rapid() {
  const n = Number(args[0]);
  const s = http2.connect(url);
  let goaway = null;
  let sent = 0;
  s.on('goaway', (code) => { goaway = code; });
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  for (let i = 0; i < n && goaway === null && !s.destroyed && !s.closed; i++) {
    try {
      const req = s.request({ ':method': 'GET', ':path': '/healthz' });
      req.on('error', () => {});
      req.close(http2.constants.NGHTTP2_CANCEL);
      sent++;
    } catch {
      break;
    }
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  const t0 = Date.now();
  while (goaway === null && !s.destroyed && Date.now() - t0 < 5000)
    await new Promise((r) => setTimeout(r, 20));
  out({ sent, goaway });
  s.destroy();
}

async function cancel() {
  const [model, auth] = args;
  const s = http2.connect(url);
  s.on('error', () => {});
  const r = await new Promise((resolve) => {
    const req = s.request({ ':method': 'POST', ':path': '/v1/chat/completions',
      'content-type': 'application/json', ...(auth ? { authorization: 'Bearer ' + auth } : {}) });
    let status = 0;
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', (d) => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      resolve({ status, first: d.toString() });
    });
    req.on('error', () => {});
    req.on('close', () => resolve({ status, closed: true }));
    req.end(chatBody(model, true));
  });
  // the session stays up: the test sees the stream's cancel, not a connection close
  const after = await exchange(s, '/healthz', null).catch((e) => ({ error: String(e) }));
  out({ ...r, after: after.status ?? after.error });
  await new Promise((res) => setTimeout(res, 3000));
  s.close();
}

async function headers() {
  const bytes = Number(args[0]);
  const s = http2.connect(url, { maxSendHeaderBlockLength: 1 << 20 });
  s.on('error', () => {});
  const hdrs = {};
  for (let i = 0; i * 4000 < bytes; i++) hdrs['x-big-' + i] = 'a'.repeat(Math.min(4000, bytes - i * 4000));
  try {
    const r = await exchange(s, '/v1/messages', JSON.stringify({ model: 'p', max_tokens: 5,
      messages: [{ role: 'user', content: 'hi' }] }), hdrs);
    const after = await exchange(s, '/healthz', null).catch((e) => ({ error: String(e) }));
    out({ status: r.status, ctype: r.headers['content-type'], body: r.body,
      after: after.status ?? after.error });
  } catch (e) {
    out({ error: String(e) });
  }
  s.destroy();
}

async function load() {
  const [model, c, stopfile] = [args[0], Number(args[1]), args[2]];
  let session = null;
  const stats = { done: 0, failed: 0, failures: [], goaways: 0, sessions: 0, refused: 0 };
  const current = () => {
    if (!session || session.closed || session.destroyed || session.bbGoaway) {
      session = http2.connect(url);
      stats.sessions++;
      const me = session;
      me.on('goaway', () => { me.bbGoaway = true; stats.goaways++; });
      me.on('error', () => {});
    }
    return session;
  };
  const loop = async (i) => {
    const stream = i % 2 === 1;
    while (!fs.existsSync(stopfile)) {
      let r;
      try {
        r = await exchange(current(), '/v1/chat/completions', chatBody(model, stream));
      } catch (e) {
        // not processed by the server: safe to send again (RFC 9113 §8.7)
        if (e.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ||
            e.code === 'ERR_HTTP2_GOAWAY_SESSION') {
          stats.refused++;
          if (process.env.H2_DEBUG) console.error('refused', e.code, e.rstCode, e.message);
          continue;
        }
        stats.failed++;
        stats.failures.push(String(e));
        continue;
      }
      let ok = r.status === 200;
      if (ok && stream) ok = sseText(r.body).done;
      else if (ok) ok = JSON.parse(r.body).choices?.[0]?.message?.content?.length > 0;
      if (ok) stats.done++;
      else {
        stats.failed++;
        stats.failures.push(`status ${r.status}: ${r.body.slice(0, 200)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: c }, (_, i) => loop(i)));
  stats.failures = stats.failures.slice(0, 20).concat(stats.failures.length > 20 ? ['…'] : []);
  out(stats);
  if (session) session.close();
}

const cmds = { multiplex, rapid, cancel, headers, load };
if (!cmds[cmd]) {
  console.error('usage: node h2_client.mjs multiplex|rapid|cancel|headers|load URL ...');
  process.exit(2);
}
await cmds[cmd]();
