// client_openai.mjs: the `openai` npm package against busbar's OpenAI chat ingress
// (POST /v1/chat/completions). One module of the SDK matrix (matrix.mjs, README.md).
import OpenAI from 'openai';
import { PROMPT, TOOL, TOOL_PROMPT, TOOL_RESULT, TIMEOUT_MS } from './common.mjs';

export const sdk = 'openai';
export const STOP = { text: 'stop', tool: 'tool_calls' };

function client(base) {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: process.env.BB_SDK_KEY || 'sk-bb-unused', maxRetries: 0, timeout: TIMEOUT_MS });
}
const usageOf = (u) => (u ? { input: u.prompt_tokens, output: u.completion_tokens } : null);

export async function nonStream(base, model) {
  const r = await client(base).chat.completions.create({
    model,
    messages: [{ role: 'user', content: PROMPT }],
  });
  const c = r.choices[0];
  return { text: c.message.content, stop: c.finish_reason, usage: usageOf(r.usage) };
}

export async function stream(base, model) {
  const s = await client(base).chat.completions.create({
    model,
    messages: [{ role: 'user', content: PROMPT }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let deltas = 0;
  let stop = null;
  let usage = null;
  for await (const chunk of s) {
    for (const ch of chunk.choices) {
      if (typeof ch.delta?.content === 'string' && ch.delta.content !== '') {
        text += ch.delta.content;
        deltas++;
      }
      if (ch.finish_reason) stop = ch.finish_reason;
    }
    if (chunk.usage) usage = usageOf(chunk.usage);
  }
  return { text, deltas, stop, usage };
}

export async function toolRoundTrip(base, model) {
  const c = client(base);
  const tools = [
    {
      type: 'function',
      function: { name: TOOL.name, description: TOOL.description, parameters: TOOL.schema },
    },
  ];
  const messages = [{ role: 'user', content: TOOL_PROMPT }];
  const r1 = await c.chat.completions.create({ model, messages, tools });
  const msg = r1.choices[0].message;
  const calls = (msg.tool_calls || []).map((tc) => ({
    id: tc.id,
    name: tc.function?.name,
    args: JSON.parse(tc.function?.arguments || 'null'),
  }));
  const out = { calls, stop1: r1.choices[0].finish_reason };
  if (calls.length !== 1) return out;
  messages.push(msg);
  messages.push({ role: 'tool', tool_call_id: calls[0].id, content: TOOL_RESULT });
  const r2 = await c.chat.completions.create({ model, messages, tools });
  out.text = r2.choices[0].message.content;
  out.stop2 = r2.choices[0].finish_reason;
  return out;
}
