// client_bedrock.mjs: @aws-sdk/client-bedrock-runtime (ConverseCommand / ConverseStreamCommand)
// against busbar's POST /model/{id}/converse and /converse-stream. One module of the SDK matrix
// (matrix.mjs, README.md). The SDK signs with SigV4; busbar's auth mode none ignores it.
// The client runs with its DEFAULT request handler, NodeHttp2Handler: on an http:// endpoint
// that is HTTP/2 cleartext with prior knowledge (h2c), which busbar speaks (worker/h2.c); the
// handler keeps one HTTP/2 session per endpoint and multiplexes the calls on it.
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { PROMPT, TOOL, TOOL_PROMPT, TOOL_RESULT, TIMEOUT_MS } from './common.mjs';

export const sdk = '@aws-sdk/client-bedrock-runtime';
export const STOP = { text: 'end_turn', tool: 'tool_use' };

export function client(base) {
  return new BedrockRuntimeClient({
    endpoint: base,
    region: 'us-east-1',
    credentials: {
      accessKeyId: process.env.BB_SDK_AWS_ID || 'x',
      secretAccessKey: process.env.BB_SDK_AWS_SECRET || 'y',
    },
    maxAttempts: 1,
  });
}
const send = (c, cmd) => c.send(cmd, { abortSignal: AbortSignal.timeout(TIMEOUT_MS) });
const usageOf = (u) => (u ? { input: u.inputTokens, output: u.outputTokens } : null);
const textOf = (content) => (content || []).filter((b) => 'text' in b).map((b) => b.text).join('');

export async function nonStream(base, model) {
  const r = await send(
    client(base),
    new ConverseCommand({ modelId: model, messages: [{ role: 'user', content: [{ text: PROMPT }] }] }),
  );
  return { text: textOf(r.output?.message?.content), stop: r.stopReason, usage: usageOf(r.usage) };
}

export async function stream(base, model) {
  const r = await send(
    client(base),
    new ConverseStreamCommand({ modelId: model, messages: [{ role: 'user', content: [{ text: PROMPT }] }] }),
  );
  let text = '';
  let deltas = 0;
  let stop = null;
  let usage = null;
  for await (const ev of r.stream) {
    if (ev.contentBlockDelta?.delta?.text !== undefined) {
      text += ev.contentBlockDelta.delta.text;
      deltas++;
    }
    if (ev.messageStop) stop = ev.messageStop.stopReason;
    if (ev.metadata) usage = usageOf(ev.metadata.usage);
    for (const k of ['internalServerException', 'modelStreamErrorException', 'validationException',
      'throttlingException', 'serviceUnavailableException']) {
      if (ev[k]) throw new Error(`stream event ${k}: ${ev[k].message}`);
    }
  }
  return { text, deltas, stop, usage };
}

export async function toolRoundTrip(base, model) {
  const c = client(base);
  const toolConfig = {
    tools: [{ toolSpec: { name: TOOL.name, description: TOOL.description, inputSchema: { json: TOOL.schema } } }],
  };
  const messages = [{ role: 'user', content: [{ text: TOOL_PROMPT }] }];
  const r1 = await send(c, new ConverseCommand({ modelId: model, messages, toolConfig }));
  const content = r1.output?.message?.content || [];
  const calls = content
    .filter((b) => b.toolUse)
    .map((b) => ({ id: b.toolUse.toolUseId, name: b.toolUse.name, args: b.toolUse.input }));
  const out = { calls, stop1: r1.stopReason };
  if (calls.length !== 1) return out;
  messages.push(r1.output.message);
  messages.push({
    role: 'user',
    content: [{ toolResult: { toolUseId: calls[0].id, content: [{ text: TOOL_RESULT }], status: 'success' } }],
  });
  const r2 = await send(c, new ConverseCommand({ modelId: model, messages, toolConfig }));
  out.text = textOf(r2.output?.message?.content);
  out.stop2 = r2.stopReason;
  return out;
}
