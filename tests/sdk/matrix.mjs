// matrix.mjs: the SDK matrix. Seven official npm SDK clients (rows, each speaking its own ingress
// protocol to busbar) × six egress protocols (columns: busbar lanes backed by bb-mock speaking
// that protocol), three modes per cell: n = non-streaming, s = streaming, t = tool-call round
// trip. Every cell is asserted against bb-mock's deterministic contract (tests/mock/README.md)
// and against the mock's attempt log. Run by tests/integration/test_sdk.py; see README.md here.
//
// Environment:
//   BB_URL        busbar base URL, e.g. http://127.0.0.1:8080 (required)
//   MOCK_URL      bb-mock base URL (required: the attempt log is part of every assertion)
//   BB_LANES      JSON {column: {lane, upstream}}; default lane e_<column>, upstream up-<column>
//   BB_LOG        busbar's stderr file: failing modes show the lines written meanwhile
//   EXPECT_TEXT   the mock's answer (default "Hello w2 w3 w4 w5 w6 w7 w8")
//   SDK_ROWS, SDK_COLS   comma-separated subsets (default: all)
//   SDK_TIMEOUT_MS       per-request timeout (default 8000)
//   MATRIX_DEADLINE_MS   cells not started by then fail as "not run" (default 90000)
//   RESULTS_JSON  write every cell's observations and failures there as JSON
// Prints the 6×6 table (and each failure) on stdout; exits 1 if any cell failed.
import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { PROMPT, TOOL, TOOL_RESULT } from './common.mjs';

export const ROWS = ['openai', 'responses', 'anthropic', 'gemini', 'bedrock', 'cohere', 'bedrock_invoke'];
export const COLS = ['openai', 'responses', 'anthropic', 'gemini', 'bedrock', 'cohere', 'bedrock_invoke'];
const MODES = [
  ['n', 'nonStream'],
  ['s', 'stream'],
  ['t', 'toolRoundTrip'],
];

const env = process.env;
const BB_URL = env.BB_URL;
const MOCK_URL = env.MOCK_URL;
if (!BB_URL || !MOCK_URL) {
  console.error('BB_URL and MOCK_URL must be set');
  process.exit(2);
}
const EXPECT_TEXT = env.EXPECT_TEXT || 'Hello w2 w3 w4 w5 w6 w7 w8';
const EXPECT_WORDS = EXPECT_TEXT.split(' ').length;
const PROMPT_WORDS = PROMPT.split(/\s+/).length;
const laneConf = env.BB_LANES ? JSON.parse(env.BB_LANES) : {};
const LANES = Object.fromEntries(
  COLS.map((c) => [c, laneConf[c] || { lane: `e_${c}`, upstream: `up-${c}` }]),
);
const pick = (all, v) => (v ? all.filter((x) => v.split(',').includes(x)) : all);
const rows = pick(ROWS, env.SDK_ROWS);
const cols = pick(COLS, env.SDK_COLS);
const DEADLINE = Date.now() + Number(env.MATRIX_DEADLINE_MS || 90000);

const clients = {};
for (const r of rows) clients[r] = await import(`./client_${r}.mjs`);

// ------------------------------------------------------------------------------ mock side

async function mockAttempts(since) {
  const res = await fetch(`${MOCK_URL}/_mock/attempts${since ? `?since=${since}` : ''}`, {
    signal: AbortSignal.timeout(5000),
  });
  if (res.status !== 200) throw new Error(`GET /_mock/attempts: ${res.status}`);
  return (await res.json()).attempts;
}
async function mockSeq() {
  const a = await mockAttempts(0);
  return a.length ? a[a.length - 1].seq : 0;
}

// The tool-call id the mock issued on attempt `seq` for its first call, per protocol
// (tests/mock/*.c: OpenAI tool_calls[].id, Responses call_id, Gemini functionCall.id and Cohere
// tool_calls[].id are call_mock<seq>_<i>; Anthropic toolu_mock<seq>_<i>; Bedrock
// tooluse_mock<seq>_<i>). Gemini matches by name, but the mock's functionCall carries an id, so
// busbar must echo that id in the functionResponse.
function issuedId(col, seq) {
  return (
    { anthropic: `toolu_mock${seq}_1`, bedrock: `tooluse_mock${seq}_1`, bedrock_invoke: `toolu_mock${seq}_1` }[col] ||
    `call_mock${seq}_1`
  );
}

const short = (a) =>
  a.map((x) => ({
    seq: x.seq,
    path: x.path,
    model: x.model,
    protocol: x.protocol,
    stream: x.stream,
    status: x.status,
    outcome: x.outcome,
    tools: x.tools,
    tool_results: x.tool_results,
  }));

// ------------------------------------------------------------------------------ assertions

class CellFailure extends Error {}
function want(cond, what, got) {
  if (!cond) throw new CellFailure(got === undefined ? what : `${what}: got ${JSON.stringify(got)}`);
}

function checkUpstream(col, atts, { n, stream }) {
  want(atts.length === n, `the mock saw ${n} attempt(s) for this cell`, short(atts));
  for (const a of atts) {
    want(a.protocol === col, `attempt ${a.seq} reached the mock's ${col} route`, a.path);
    want(a.stream === stream, `attempt ${a.seq} stream flag`, a.stream);
    want(a.status === 200 && a.outcome === 'ok', `attempt ${a.seq} answered 200/ok`,
      { status: a.status, outcome: a.outcome });
  }
}

const checks = {
  n(row, col, r, atts) {
    const c = clients[row];
    want(r.text === EXPECT_TEXT, 'text', r.text);
    want(r.stop === c.STOP.text, `stop reason ${c.STOP.text}`, r.stop);
    want(r.usage && r.usage.output === EXPECT_WORDS, `usage output tokens ${EXPECT_WORDS}`, r.usage);
    want(r.usage.input === PROMPT_WORDS, `usage input tokens ${PROMPT_WORDS}`, r.usage);
    checkUpstream(col, atts, { n: 1, stream: false });
  },
  s(row, col, r, atts) {
    const c = clients[row];
    want(r.text === EXPECT_TEXT, 'streamed text (concatenated deltas)', r.text);
    want(r.deltas > 1, 'text arrived in more than one event', r.deltas);
    if ('final' in r) want(r.final === EXPECT_TEXT, "the SDK's accumulated final text", r.final);
    want(r.stop === c.STOP.text, `stop reason ${c.STOP.text}`, r.stop);
    want(r.usage && r.usage.output === EXPECT_WORDS, `final usage output tokens ${EXPECT_WORDS}`, r.usage);
    checkUpstream(col, atts, { n: 1, stream: true });
  },
  t(row, col, r, atts) {
    const c = clients[row];
    want(r.calls.length === 1, 'exactly one tool call surfaced', r.calls);
    const call = r.calls[0];
    want(call.name === TOOL.name, `the call names the declared tool ${TOOL.name}`, call.name);
    want(isDeepStrictEqual(call.args, { q: 'w1' }), 'the call arguments are {"q":"w1"}', call.args);
    want(row === 'gemini' || (typeof call.id === 'string' && call.id !== ''), 'the call has an id', call.id);
    want(r.stop1 === c.STOP.tool, `tool-call stop reason ${c.STOP.tool}`, r.stop1);
    want(r.text === EXPECT_TEXT, 'final answer after the tool result', r.text);
    want(r.stop2 === c.STOP.text, `final stop reason ${c.STOP.text}`, r.stop2);
    checkUpstream(col, atts, { n: 2, stream: false });
    const [a1, a2] = atts;
    want(isDeepStrictEqual(a1.tools, [TOOL.name]), 'the tool reached the provider', a1.tools);
    want(a1.tool_results.length === 0, 'no tool result in the first request', a1.tool_results);
    want(a2.tool_results.length === 1, 'one tool result reached the provider', a2.tool_results);
    const res = a2.tool_results[0];
    const id = issuedId(col, a1.seq);
    if (row === 'gemini' && col === 'gemini' && !('id' in res)) {
      // Gemini to Gemini: a functionResponse that names the function is what the client
      // sent (Google's guide does it so), and Gemini itself matches by name.
      want(res.name === TOOL.name, 'the function response names the tool', res);
    } else {
      want(res.id === id, `the tool result carries the provider-issued id ${id}`, res);
    }
    want(typeof res.content === 'string' && res.content.includes(TOOL_RESULT),
      `the tool result content carries ${TOOL_RESULT}`, res.content);
  },
};

// ------------------------------------------------------------------------------ running

function logSize() {
  try {
    return env.BB_LOG ? fs.statSync(env.BB_LOG).size : 0;
  } catch {
    return 0;
  }
}
function logSince(off, lane) {
  if (!env.BB_LOG) return [];
  let text = '';
  try {
    const fd = fs.openSync(env.BB_LOG, 'r');
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - off));
    fs.readSync(fd, buf, 0, buf.length, off);
    fs.closeSync(fd);
    text = buf.toString('utf8');
  } catch {
    return [];
  }
  const lines = text.split('\n').filter(Boolean);
  return lines.filter((l) => l.includes(lane)).slice(-15);
}

function errText(e) {
  if (e instanceof CellFailure) return e.message;
  const parts = [`${e?.constructor?.name || 'Error'}: ${e?.message ?? e}`];
  if (e?.status) parts.push(`status ${e.status}`);
  if (e?.$metadata?.httpStatusCode) parts.push(`status ${e.$metadata.httpStatusCode}`);
  if (e?.statusCode) parts.push(`status ${e.statusCode}`);
  if (e?.body !== undefined) parts.push(`body ${JSON.stringify(e.body).slice(0, 600)}`);
  if (e?.error !== undefined && typeof e.error === 'object') parts.push(`error ${JSON.stringify(e.error).slice(0, 600)}`);
  if (e?.cause) parts.push(`cause ${e.cause?.message ?? e.cause}`);
  const frame = (e?.stack || '').split('\n').find((l) => l.includes('/tests/sdk/client_'));
  if (frame) parts.push(`at ${frame.trim().replace(/^at /, '')}`);
  return parts.join('; ');
}

async function runCell(row, col) {
  const { lane, upstream } = LANES[col];
  const cell = { row, col, lane, modes: {} };
  for (const [letter, fn] of MODES) {
    const m = { ok: false };
    cell.modes[letter] = m;
    if (Date.now() > DEADLINE) {
      m.error = 'not run: the matrix deadline passed';
      continue;
    }
    const t0 = Date.now();
    const off = logSize();
    let since = 0;
    try {
      since = await mockSeq();
      const r = await clients[row][fn](BB_URL, lane);
      m.observed = r;
      const atts = (await mockAttempts(since)).filter((a) => a.model === upstream);
      m.attempts = short(atts);
      checks[letter](row, col, r, atts);
      m.ok = true;
    } catch (e) {
      m.error = errText(e);
      if (!m.attempts) {
        try {
          m.attempts = short((await mockAttempts(since)).filter((a) => a.model === upstream));
        } catch {}
      }
      m.log = logSince(off, lane);
    }
    m.ms = Date.now() - t0;
  }
  return cell;
}

// Rounds of a Latin square: in round k, row i runs against column (i + k) mod 7, so the seven
// cells of a round run concurrently, each on its own lane (its own upstream model in the
// mock's attempt log), and every client SDK and every lane is used once per round.
const t0 = Date.now();
const cells = [];
for (let k = 0; k < COLS.length; k++) {
  const round = [];
  for (const row of rows) {
    const col = COLS[(ROWS.indexOf(row) + k) % COLS.length];
    if (cols.includes(col)) round.push(runCell(row, col));
  }
  cells.push(...(await Promise.all(round)));
}

// ------------------------------------------------------------------------------ report

const get = (row, col) => cells.find((c) => c.row === row && c.col === col);
const mark = (c) => (c ? MODES.map(([l]) => (c.modes[l].ok ? '✓' : l)).join('') : '···');
const W = 15;
const table = [
  'SDK matrix: rows = client SDK (its ingress at busbar), columns = egress protocol (bb-mock)',
  'cell = non-stream, stream, tool round trip: ✓ passed, n/s/t failed, · not run',
  ''.padEnd(W) + COLS.map((c) => c.padEnd(W)).join(''),
  ...ROWS.map((r) => r.padEnd(W) + COLS.map((c) => mark(rows.includes(r) && get(r, c)).padEnd(W)).join('')),
];
const failures = [];
for (const c of cells)
  for (const [l] of MODES)
    if (!c.modes[l].ok) failures.push({ row: c.row, col: c.col, mode: l, ...c.modes[l] });
const passed = cells.length * MODES.length - failures.length;
table.push(`${passed}/${cells.length * MODES.length} modes passed in ${((Date.now() - t0) / 1000).toFixed(1)}s`);

console.log(table.join('\n'));
for (const f of failures) {
  console.log(`\nFAIL ${f.row} -> ${f.col} [${f.mode}]: ${f.error}`);
  if (f.observed) console.log(`  observed: ${JSON.stringify(f.observed).slice(0, 800)}`);
  if (f.attempts) console.log(`  mock attempts: ${JSON.stringify(f.attempts).slice(0, 800)}`);
  for (const l of f.log || []) console.log(`  busbar| ${l}`);
}
if (env.RESULTS_JSON) fs.writeFileSync(env.RESULTS_JSON, JSON.stringify({ table, cells }, null, 1));
process.exit(failures.length ? 1 : 0);
