// parallel_tools.mjs: two parallel tool calls streamed by an OpenAI lane, their argument
// pieces interleaved as vLLM streams them (the mock's `tools=2;interleave`), read by the
// official SDKs' stream accumulators in three dialects: Anthropic
// (messages.stream), OpenAI Responses (responses.stream) and OpenAI chat. busbar's OpenAI
// decoder keeps every call open until the finish (interleaving providers send a call's
// arguments after the next call started), so the translated streams end all calls together;
// each SDK must still surface both calls whole, with their names and parsed arguments.
// Run by tests/integration/test_sdk.py with BASE_URL (busbar, no path), MODEL (the pool) and
// API_KEY. Prints one TAP-like line per check and exits 1 if any failed.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { isDeepStrictEqual } from 'node:util';

const { BASE_URL, MODEL, API_KEY } = process.env;
if (!BASE_URL || !MODEL) {
  console.error('BASE_URL and MODEL must be set');
  process.exit(2);
}
const NAMES = ['get_weather', 'get_time'];
const SCHEMA = { type: 'object', properties: { q: { type: 'string' } } };
let failed = 0;
function check(ok, what, got) {
  if (!ok) failed++;
  console.log(`${ok ? 'ok' : 'not ok'} - ${what}${ok ? '' : ': got ' + JSON.stringify(got)}`);
}
// [name, arguments object] per call, in order
function want(dialect, calls) {
  check(isDeepStrictEqual(calls.map((c) => c[0]), NAMES), `${dialect}: both calls, named`, calls);
  check(calls.every((c) => c[1] && typeof c[1] === 'object' && typeof c[1].q === 'string'),
    `${dialect}: each call's arguments whole (JSON object)`, calls);
}

const key = API_KEY || 'sk-bb-unused';
try {
  const a = new Anthropic({ baseURL: BASE_URL, apiKey: key, maxRetries: 0 });
  const m = await a.messages.stream({
    model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'go' }],
    tools: NAMES.map((name) => ({ name, description: name, input_schema: SCHEMA })),
  }).finalMessage();
  want('anthropic', m.content.filter((b) => b.type === 'tool_use').map((b) => [b.name, b.input]));
  check(m.stop_reason === 'tool_use', 'anthropic: stop_reason tool_use', m.stop_reason);
} catch (e) {
  check(false, 'anthropic stream', String(e));
}
const o = new OpenAI({ baseURL: BASE_URL + '/v1', apiKey: key, maxRetries: 0 });
try {
  const r = await o.responses.stream({
    model: MODEL, input: 'go',
    tools: NAMES.map((name) => ({ type: 'function', name, description: name, parameters: SCHEMA })),
  }).finalResponse();
  want('responses', r.output.filter((i) => i.type === 'function_call')
    .map((i) => [i.name, JSON.parse(i.arguments)]));
  check(r.status === 'completed', 'responses: completed', r.status);
} catch (e) {
  check(false, 'responses stream', String(e));
}
try {
  const c = await o.chat.completions.stream({
    model: MODEL, messages: [{ role: 'user', content: 'go' }],
    tools: NAMES.map((name) => ({ type: 'function', function: { name, parameters: SCHEMA } })),
  }).finalChatCompletion();
  want('openai chat', (c.choices[0].message.tool_calls || [])
    .map((t) => [t.function.name, JSON.parse(t.function.arguments)]));
} catch (e) {
  check(false, 'openai chat stream', String(e));
}
process.exit(failed ? 1 : 0);
