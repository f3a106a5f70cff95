// openai_chat.mjs: the official `openai` npm client drives busbar's OpenAI chat ingress
// beyond the matrix (matrix.mjs): a pool as the model, models.list, the stream helper, and a
// NotFoundError. Run by tests/integration/test_sdk.py after the matrix, with:
//   BASE_URL       busbar's base URL including /v1
//   MODEL          the pool (or lane) to ask for
//   EXPECT_TEXT    the mock's deterministic answer
//   API_KEY        optional client key (auth mode none ignores it)
// Prints one TAP-like line per check and exits 1 if any failed. No retries in the client:
// a busbar bug must not be hidden by the SDK's own retry loop.
import OpenAI from 'openai';

const { BASE_URL, MODEL, EXPECT_TEXT } = process.env;
if (!BASE_URL || !MODEL || !EXPECT_TEXT) {
  console.error('BASE_URL, MODEL and EXPECT_TEXT must be set');
  process.exit(2);
}
const client = new OpenAI({
  baseURL: BASE_URL,
  apiKey: process.env.API_KEY || 'sk-bb-unused',
  maxRetries: 0,
  timeout: 20000,
});
const messages = [
  { role: 'system', content: 'you are a test' },
  { role: 'user', content: 'say the deterministic words' },
];
const expectWords = EXPECT_TEXT.split(' ').length;
const promptWords = messages.map((m) => m.content.split(/\s+/).length).reduce((a, b) => a + b);

let failed = 0;
function assert(cond, what, detail) {
  if (!cond) throw new Error(`${what}${detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`);
}
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

await check('chat.completions.create (non-stream)', async () => {
  const { data: r, response } = await client.chat.completions
    .create({ model: MODEL, messages })
    .withResponse();
  assert(r.object === 'chat.completion', 'object', r.object);
  assert(r.choices[0].message.role === 'assistant', 'role', r.choices[0].message);
  assert(r.choices[0].message.content === EXPECT_TEXT, 'content', r.choices[0].message.content);
  assert(r.choices[0].finish_reason === 'stop', 'finish_reason', r.choices[0].finish_reason);
  assert(r.usage.prompt_tokens === promptWords, 'usage.prompt_tokens', r.usage);
  assert(r.usage.completion_tokens === expectWords, 'usage.completion_tokens', r.usage);
  assert(response.headers.get('x-busbar-lane'), 'x-busbar-lane header missing');
  assert(response.headers.get('x-request-id'), 'x-request-id header missing');
});

await check('chat.completions.create (stream, include_usage)', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    assert(chunk.object === 'chat.completion.chunk', 'chunk.object', chunk.object);
    for (const ch of chunk.choices) {
      if (ch.delta && typeof ch.delta.content === 'string') text += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert(text === EXPECT_TEXT, 'streamed text', text);
  assert(chunks >= expectWords, 'chunk count', chunks);
  assert(finish === 'stop', 'finish_reason', finish);
  assert(usage && usage.completion_tokens === expectWords, 'final usage chunk', usage);
});

await check('chat.completions.stream helper (finalChatCompletion)', async () => {
  const runner = client.chat.completions.stream({ model: MODEL, messages });
  const final = await runner.finalChatCompletion();
  assert(final.choices[0].message.content === EXPECT_TEXT, 'final content', final.choices[0]);
});

await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert(ids.includes(MODEL), `${MODEL} in models.list`, ids);
});

await check('unknown model → NotFoundError model_not_found', async () => {
  let err = null;
  try {
    await client.chat.completions.create({ model: 'no-such-model-anywhere', messages });
  } catch (e) {
    err = e;
  }
  assert(err instanceof OpenAI.NotFoundError, 'error class', err && err.constructor.name);
  assert(err.status === 404, 'status', err.status);
  assert(err.code === 'model_not_found', 'error code', err.code);
});

console.log(failed ? `# ${failed} check(s) failed` : '# all checks passed');
process.exit(failed ? 1 : 0);
