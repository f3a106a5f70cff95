// client_anthropic.mjs: @anthropic-ai/sdk against busbar's POST /v1/messages.
// One module of the SDK matrix (matrix.mjs, README.md).
import Anthropic from '@anthropic-ai/sdk';
import { PROMPT, TOOL, TOOL_PROMPT, TOOL_RESULT, TIMEOUT_MS } from './common.mjs';

export const sdk = '@anthropic-ai/sdk';
export const STOP = { text: 'end_turn', tool: 'tool_use' };
const MAX_TOKENS = 256;

function client(base) {
  return new Anthropic({ baseURL: base, apiKey: process.env.BB_SDK_KEY || 'sk-ant-bb-unused', maxRetries: 0, timeout: TIMEOUT_MS });
}
const usageOf = (u) => (u ? { input: u.input_tokens, output: u.output_tokens } : null);
const textOf = (content) =>
  content.filter((b) => b.type === 'text').map((b) => b.text).join('');

export async function nonStream(base, model) {
  const r = await client(base).messages.create({
    model,
    max_tokens: MAX_TOKENS,
    messages: [{ role: 'user', content: PROMPT }],
  });
  return { text: textOf(r.content), stop: r.stop_reason, usage: usageOf(r.usage) };
}

export async function stream(base, model) {
  const s = client(base).messages.stream({
    model,
    max_tokens: MAX_TOKENS,
    messages: [{ role: 'user', content: PROMPT }],
  });
  let text = '';
  let deltas = 0;
  for await (const ev of s) {
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') {
      text += ev.delta.text;
      deltas++;
    }
  }
  const final = await s.finalMessage();
  return { text, deltas, stop: final.stop_reason, usage: usageOf(final.usage), final: textOf(final.content) };
}

export async function toolRoundTrip(base, model) {
  const c = client(base);
  const tools = [{ name: TOOL.name, description: TOOL.description, input_schema: TOOL.schema }];
  const messages = [{ role: 'user', content: TOOL_PROMPT }];
  const r1 = await c.messages.create({ model, max_tokens: MAX_TOKENS, messages, tools });
  const calls = r1.content
    .filter((b) => b.type === 'tool_use')
    .map((b) => ({ id: b.id, name: b.name, args: b.input }));
  const out = { calls, stop1: r1.stop_reason };
  if (calls.length !== 1) return out;
  messages.push({ role: 'assistant', content: r1.content });
  messages.push({
    role: 'user',
    content: [{ type: 'tool_result', tool_use_id: calls[0].id, content: TOOL_RESULT }],
  });
  const r2 = await c.messages.create({ model, max_tokens: MAX_TOKENS, messages, tools });
  out.text = textOf(r2.content);
  out.stop2 = r2.stop_reason;
  return out;
}
