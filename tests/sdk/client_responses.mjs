// client_responses.mjs: the `openai` npm package's Responses API (client.responses) against
// busbar's POST /v1/responses. One module of the SDK matrix (matrix.mjs, README.md).
import OpenAI from 'openai';
import { PROMPT, TOOL, TOOL_PROMPT, TOOL_RESULT, TIMEOUT_MS } from './common.mjs';

export const sdk = 'openai (responses)';
// The Responses API has no finish reason: a finished response is status "completed" either way.
export const STOP = { text: 'completed', tool: 'completed' };

function client(base) {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: process.env.BB_SDK_KEY || 'sk-bb-unused', maxRetries: 0, timeout: TIMEOUT_MS });
}
const usageOf = (u) => (u ? { input: u.input_tokens, output: u.output_tokens } : null);

export async function nonStream(base, model) {
  const r = await client(base).responses.create({ model, input: PROMPT });
  return { text: r.output_text, stop: r.status, usage: usageOf(r.usage) };
}

export async function stream(base, model) {
  const s = client(base).responses.stream({ model, input: PROMPT });
  let text = '';
  let deltas = 0;
  for await (const ev of s) {
    if (ev.type === 'response.output_text.delta') {
      text += ev.delta;
      deltas++;
    }
  }
  const final = await s.finalResponse();
  return { text, deltas, stop: final.status, usage: usageOf(final.usage), final: final.output_text };
}

export async function toolRoundTrip(base, model) {
  const c = client(base);
  const tools = [
    {
      type: 'function',
      name: TOOL.name,
      description: TOOL.description,
      parameters: TOOL.schema,
      strict: false,
    },
  ];
  const input = [{ role: 'user', content: TOOL_PROMPT }];
  const r1 = await c.responses.create({ model, input, tools });
  const fcs = r1.output.filter((o) => o.type === 'function_call');
  const calls = fcs.map((o) => ({ id: o.call_id, name: o.name, args: JSON.parse(o.arguments || 'null') }));
  const out = { calls, stop1: r1.status };
  if (calls.length !== 1) return out;
  input.push(...r1.output);
  input.push({ type: 'function_call_output', call_id: calls[0].id, output: TOOL_RESULT });
  const r2 = await c.responses.create({ model, input, tools });
  out.text = r2.output_text;
  out.stop2 = r2.status;
  return out;
}
