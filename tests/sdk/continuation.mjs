// continuation.mjs: `stream.on_cut: continue` through the official SDKs (issue 10). Each of the
// six SDKs streams (its client module's idiomatic stream(), as in the matrix) from a pool
// [cut lane, healthy lane] whose cut lane breaks the stream after 3 words (bb-mock
// `fail_first=1;cut=3`: after the commit point). busbar must replay the request with the text
// already sent as an assistant prefill and stream the continuation on in the same client
// stream, so the SDK sees ONE whole answer and a normal end (the end-of-turn stop reason, no
// exception). The mock's attempt log shows the cut attempt (no prefill) and the continuation
// attempt whose prefill is the text already sent.
//
// Environment:
//   BB_URL       busbar base URL (required)
//   MOCK_URL     bb-mock base URL (required)
//   POOLS        JSON {row: {pool, cut, healthy}}: the pool each SDK streams from, and the
//                upstream model names (without directives) of its cut and healthy lanes
//   EXPECT_TEXT  the mock's answer (default "Hello w2 w3 w4 w5 w6 w7 w8")
//   SDK_ROWS     comma-separated subset of the six SDKs (default: all)
// Prints one `ok - <row>` / `not ok - <row>: <why>` line per SDK; exits 1 if any failed.
const env = process.env;
if (!env.BB_URL || !env.MOCK_URL || !env.POOLS) {
  console.error('BB_URL, MOCK_URL and POOLS must be set');
  process.exit(2);
}
const EXPECT_TEXT = env.EXPECT_TEXT || 'Hello w2 w3 w4 w5 w6 w7 w8';
const POOLS = JSON.parse(env.POOLS);
const ROWS = ['openai', 'responses', 'anthropic', 'gemini', 'bedrock', 'cohere', 'bedrock_invoke'].filter(
  (r) => !env.SDK_ROWS || env.SDK_ROWS.split(',').includes(r),
);

async function attempts() {
  const res = await fetch(`${env.MOCK_URL}/_mock/attempts`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`GET /_mock/attempts: ${res.status}`);
  return (await res.json()).attempts;
}

function errText(e) {
  const status = e?.status ?? e?.statusCode ?? e?.$metadata?.httpStatusCode;
  return `${e?.constructor?.name || 'Error'}${status ? ` ${status}` : ''}: ${String(e?.message || e).slice(0, 300)}`;
}

async function one(row) {
  const c = await import(`./client_${row}.mjs`);
  const p = POOLS[row];
  let r;
  try {
    r = await c.stream(env.BB_URL, p.pool);
  } catch (e) {
    return [`the SDK's stream failed: ${errText(e)}`];
  }
  const why = [];
  if (r.text !== EXPECT_TEXT) why.push(`text ${JSON.stringify(r.text)}, want ${JSON.stringify(EXPECT_TEXT)}`);
  if ('final' in r && r.final !== EXPECT_TEXT) why.push(`the SDK's final text ${JSON.stringify(r.final)}`);
  if (r.stop !== c.STOP.text) why.push(`stop reason ${JSON.stringify(r.stop)}, want ${c.STOP.text}`);
  return why;
}

const results = await Promise.all(ROWS.map(async (row) => [row, await one(row)]));
const all = await attempts();
let failed = 0;
for (const [row, why] of results) {
  const p = POOLS[row];
  const mine = (m) => all.filter((a) => (a.model || '').split(';')[0] === m);
  const cut = mine(p.cut);
  const cont = [...cut, ...mine(p.healthy)].filter((a) => a.prefill !== null);
  if (!cut.length || cut[0].prefill !== null) why.push(`the cut lane's first attempt: ${JSON.stringify(cut[0] || null)}`);
  if (cont.length !== 1) {
    why.push(`${cont.length} attempts carried a prefill, want 1 (the continuation)`);
  } else if (!cont[0].prefill || !EXPECT_TEXT.startsWith(cont[0].prefill)) {
    why.push(`the continuation's prefill ${JSON.stringify(cont[0].prefill)} is not the text already sent`);
  }
  if (why.length) {
    failed++;
    console.log(`not ok - ${row}: ${why.join('; ')}`);
    const seen = [...cut, ...mine(p.healthy)].map((a) => ({ model: a.model, protocol: a.protocol, stream: a.stream, status: a.status, outcome: a.outcome, prefill: a.prefill }));
    console.log(`#   mock attempts: ${JSON.stringify(seen)}`);
  } else {
    console.log(`ok - ${row}: one whole answer, continued on ${cont[0].protocol} after the prefill ${JSON.stringify(cont[0].prefill)}`);
  }
}
process.exit(failed ? 1 : 0);
