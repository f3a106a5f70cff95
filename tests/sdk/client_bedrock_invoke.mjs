// client_bedrock_invoke.mjs: @aws-sdk/client-bedrock-runtime (InvokeModelCommand /
// InvokeModelWithResponseStreamCommand, Anthropic's Messages body with anthropic_version
// "bedrock-2023-05-31") against busbar's POST /model/{id}/invoke and
// /invoke-with-response-stream. One module of the SDK matrix (matrix.mjs, README.md). The SDK
// signs with SigV4 (the virtual key's AWS pair); it is given the HTTP/1.1 handler, as
// client_bedrock.mjs explains.
import {
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { client } from './client_bedrock.mjs'; // the same signed HTTP/1.1 client
import { PROMPT, TOOL, TOOL_PROMPT, TOOL_RESULT, TIMEOUT_MS } from './common.mjs';

export const sdk = '@aws-sdk/client-bedrock-runtime';
export const STOP = { text: 'end_turn', tool: 'tool_use' };
const VERSION = 'bedrock-2023-05-31';
const MAX_TOKENS = 256;

const send = (c, cmd) => c.send(cmd, { abortSignal: AbortSignal.timeout(TIMEOUT_MS) });
const usageOf = (u) => (u ? { input: u.input_tokens, output: u.output_tokens } : null);
const textOf = (content) =>
  (content || []).filter((b) => b.type === 'text').map((b) => b.text).join('');
const invoke = (model, body) =>
  new InvokeModelCommand({
    modelId: model,
    contentType: 'application/json',
    accept: 'application/json',
    body: JSON.stringify({ anthropic_version: VERSION, max_tokens: MAX_TOKENS, ...body }),
  });
const message = (r) => JSON.parse(new TextDecoder().decode(r.body));

export async function nonStream(base, model) {
  const r = message(await send(client(base), invoke(model, { messages: [{ role: 'user', content: PROMPT }] })));
  return { text: textOf(r.content), stop: r.stop_reason, usage: usageOf(r.usage) };
}

export async function stream(base, model) {
  const r = await send(
    client(base),
    new InvokeModelWithResponseStreamCommand({
      modelId: model,
      contentType: 'application/json',
      body: JSON.stringify({
        anthropic_version: VERSION,
        max_tokens: MAX_TOKENS,
        messages: [{ role: 'user', content: PROMPT }],
      }),
    }),
  );
  let text = '';
  let deltas = 0;
  let stop = null;
  let usage = null;
  let metrics = null;
  for await (const ev of r.body) {
    for (const k of ['internalServerException', 'modelStreamErrorException', 'validationException',
      'throttlingException', 'modelTimeoutException', 'serviceUnavailableException']) {
      if (ev[k]) throw new Error(`stream event ${k}: ${ev[k].message}`);
    }
    if (!ev.chunk) continue;
    const e = JSON.parse(new TextDecoder().decode(ev.chunk.bytes));
    if (e.type === 'content_block_delta' && e.delta.type === 'text_delta') {
      text += e.delta.text;
      deltas++;
    }
    if (e.type === 'message_delta') {
      stop = e.delta.stop_reason;
      usage = { input: e.usage.input_tokens, output: e.usage.output_tokens };
    }
    if (e.type === 'message_stop') metrics = e['amazon-bedrock-invocationMetrics'];
  }
  if (!metrics || metrics.outputTokenCount !== usage?.output)
    throw new Error(`message_stop without matching invocation metrics: ${JSON.stringify(metrics)}`);
  return { text, deltas, stop, usage };
}

export async function toolRoundTrip(base, model) {
  const c = client(base);
  const tools = [{ name: TOOL.name, description: TOOL.description, input_schema: TOOL.schema }];
  const messages = [{ role: 'user', content: TOOL_PROMPT }];
  const r1 = message(await send(c, invoke(model, { messages, tools })));
  const calls = (r1.content || [])
    .filter((b) => b.type === 'tool_use')
    .map((b) => ({ id: b.id, name: b.name, args: b.input }));
  const out = { calls, stop1: r1.stop_reason };
  if (calls.length !== 1) return out;
  messages.push({ role: 'assistant', content: r1.content });
  messages.push({
    role: 'user',
    content: [{ type: 'tool_result', tool_use_id: calls[0].id, content: TOOL_RESULT }],
  });
  const r2 = message(await send(c, invoke(model, { messages, tools })));
  out.text = textOf(r2.content);
  out.stop2 = r2.stop_reason;
  return out;
}
