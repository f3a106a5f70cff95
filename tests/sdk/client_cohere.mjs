// client_cohere.mjs: cohere-ai's CohereClientV2 against busbar's POST /v2/chat.
// One module of the SDK matrix (matrix.mjs, README.md).
import { CohereClientV2 } from 'cohere-ai';
import { PROMPT, TOOL, TOOL_PROMPT, TOOL_RESULT, TIMEOUT_MS } from './common.mjs';

export const sdk = 'cohere-ai (v2)';
export const STOP = { text: 'COMPLETE', tool: 'TOOL_CALL' };

function client(base) {
  return new CohereClientV2({
    token: process.env.BB_SDK_KEY || 'bb-unused',
    environment: base,
    maxRetries: 0,
    timeoutInSeconds: Math.ceil(TIMEOUT_MS / 1000),
  });
}
const usageOf = (u) => (u?.tokens ? { input: u.tokens.inputTokens, output: u.tokens.outputTokens } : null);
const textOf = (content) =>
  (content || []).filter((b) => b.type === 'text').map((b) => b.text).join('');

export async function nonStream(base, model) {
  const r = await client(base).chat({ model, messages: [{ role: 'user', content: PROMPT }] });
  return { text: textOf(r.message?.content), stop: r.finishReason, usage: usageOf(r.usage) };
}

export async function stream(base, model) {
  const s = await client(base).chatStream({ model, messages: [{ role: 'user', content: PROMPT }] });
  let text = '';
  let deltas = 0;
  let stop = null;
  let usage = null;
  for await (const ev of s) {
    if (ev.type === 'content-delta') {
      const t = ev.delta?.message?.content?.text;
      if (typeof t === 'string') {
        text += t;
        deltas++;
      }
    } else if (ev.type === 'message-end') {
      if (ev.delta?.error) throw new Error(`message-end error: ${ev.delta.error}`);
      stop = ev.delta?.finishReason ?? null;
      usage = usageOf(ev.delta?.usage);
    }
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
  const r1 = await c.chat({ model, messages, tools });
  const calls = (r1.message?.toolCalls || []).map((tc) => ({
    id: tc.id,
    name: tc.function?.name,
    args: JSON.parse(tc.function?.arguments || 'null'),
  }));
  const out = { calls, stop1: r1.finishReason };
  if (calls.length !== 1) return out;
  messages.push({ role: 'assistant', toolCalls: r1.message.toolCalls, toolPlan: r1.message.toolPlan });
  messages.push({
    role: 'tool',
    toolCallId: calls[0].id,
    content: [{ type: 'text', text: TOOL_RESULT }],
  });
  const r2 = await c.chat({ model, messages, tools });
  out.text = textOf(r2.message?.content);
  out.stop2 = r2.finishReason;
  return out;
}
