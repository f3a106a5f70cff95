// sdk_check.mjs: points each official SDK straight at bb-mock (no busbar in between) and checks
// that it parses the mock's answers: non-stream, stream, a tool call + tool result round trip,
// thinking + cached usage, a scripted status error and an in-band stream error, for OpenAI chat,
// OpenAI Responses, Anthropic, Gemini, Bedrock Converse and Cohere v2. A dev tool, not
// registered with meson. Run it with the SDKs of tests/sdk:
//   cd tests/sdk && node ../mock/sdk_check.mjs PORT
// (start the mock first: build/tests/mock/bb-mock --listen 127.0.0.1:PORT). Prints one TAP-like
// line per check and exits 1 if any failed.
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const PORT = process.argv[2];
if (!PORT) {
  console.error('usage: node sdk_check.mjs PORT   (from tests/sdk)');
  process.exit(2);
}
const BASE = `http://127.0.0.1:${PORT}`;

// Resolve the SDKs from tests/sdk/node_modules whatever the cwd.
const here = path.dirname(fileURLToPath(import.meta.url));
const roots = [process.cwd(), path.join(here, '..', 'sdk')];
const root = roots.find((r) => fs.existsSync(path.join(r, 'node_modules', 'openai')));
if (!root) {
  console.error('cannot find tests/sdk/node_modules: run from tests/sdk after npm ci');
  process.exit(2);
}
const require = createRequire(path.join(root, 'package.json'));
const OpenAI = require('openai').OpenAI;
const Anthropic = require('@anthropic-ai/sdk').Anthropic;
const { GoogleGenAI } = require('@google/genai');
const bedrock = require('@aws-sdk/client-bedrock-runtime');
// The Bedrock runtime client defaults to NodeHttp2Handler (h2c prior knowledge on http://);
// the mock speaks HTTP/1.1, so hand it the HTTP/1.1 handler.
const { NodeHttpHandler } = require('@smithy/node-http-handler');
const { CohereClientV2 } = require('cohere-ai');

const TEXT = 'Hello w2 w3 w4 w5 w6 w7 w8';
const PROMPT = 'say the deterministic words'; // 4 words
const ARGS = { q: 'w1' };

let failed = 0;
function assert(cond, what, detail) {
  if (!cond) throw new Error(`${what}${detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`);
}
function eq(got, want, what) {
  assert(JSON.stringify(got) === JSON.stringify(want), `${what}: want ${JSON.stringify(want)}`, got);
}
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${e && e.stack ? e.stack.split('\n').slice(0, 4).join(' | ') : e}`);
  }
}
async function lastAttempt() {
  const r = await fetch(`${BASE}/_mock/attempts`);
  const a = (await r.json()).attempts;
  return a[a.length - 1];
}
async function rejects(fn, test, what) {
  let err = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert(err, `${what}: no error thrown`);
  assert(test(err), `${what}: unexpected error`, String(err && (err.name + ' ' + err.message)));
}

// ------------------------------------------------------------------ OpenAI chat completions
{
  const c = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: 'sk-mock', maxRetries: 0 });
  const messages = [{ role: 'user', content: PROMPT }];
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }];
  await check('openai chat: non-stream', async () => {
    const r = await c.chat.completions.create({ model: 'gpt-mock', messages });
    eq(r.choices[0].message.content, TEXT, 'content');
    eq(r.choices[0].finish_reason, 'stop', 'finish_reason');
    eq([r.usage.prompt_tokens, r.usage.completion_tokens], [4, 8], 'usage');
  });
  await check('openai chat: stream', async () => {
    const s = await c.chat.completions.create({ model: 'gpt-mock', messages, stream: true, stream_options: { include_usage: true } });
    let text = '', usage = null;
    for await (const ch of s) {
      if (ch.choices[0]) text += ch.choices[0].delta.content || '';
      if (ch.usage) usage = ch.usage;
    }
    eq(text, TEXT, 'text');
    eq(usage.total_tokens, 12, 'usage.total_tokens');
  });
  await check('openai chat: tool call + result round trip', async () => {
    const r = await c.chat.completions.create({ model: 'gpt-mock', messages, tools });
    const tc = r.choices[0].message.tool_calls[0];
    eq(r.choices[0].finish_reason, 'tool_calls', 'finish_reason');
    assert(/^call_mock\d+_1$/.test(tc.id), 'id', tc.id);
    eq(JSON.parse(tc.function.arguments), ARGS, 'arguments');
    const r2 = await c.chat.completions.create({
      model: 'gpt-mock', tools,
      messages: [...messages, r.choices[0].message, { role: 'tool', tool_call_id: tc.id, content: 'sunny' }],
    });
    eq(r2.choices[0].message.content, TEXT, 'answer after the tool result');
    const a = await lastAttempt();
    eq(a.tool_results, [{ id: tc.id, content: 'sunny' }], 'attempt tool_results');
    eq(a.tools, ['get_weather'], 'attempt tools');
  });
  await check('openai chat: streamed tool calls (tools=2) via the SDK stream helper', async () => {
    const s = c.chat.completions.stream({ model: 'gpt-mock;tools=2', messages, tools });
    const fin = await s.finalChatCompletion();
    const calls = fin.choices[0].message.tool_calls;
    eq(calls.map((x) => JSON.parse(x.function.arguments)), [{ q: 'w1' }, { q: 'w2' }], 'arguments');
  });
  await check('openai chat: think + cached usage', async () => {
    const r = await c.chat.completions.create({ model: 'gpt-mock;think;cached=10', messages });
    eq(r.choices[0].message.reasoning_content, 'Let me think.', 'reasoning_content');
    eq([r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens, r.usage.completion_tokens_details.reasoning_tokens], [14, 10, 3], 'usage');
  });
  await check('openai chat: status=429 and in-band error', async () => {
    await rejects(() => c.chat.completions.create({ model: 'gpt-mock;status=429;errcode=rate_limit_exceeded', messages }),
      (e) => e.status === 429 && e.code === 'rate_limit_exceeded', 'status');
    await rejects(async () => {
      for await (const _ of await c.chat.completions.create({ model: 'gpt-mock;inband=2', messages, stream: true }));
    }, (e) => /in-band/.test(e.message), 'inband');
  });
}

// ------------------------------------------------------------------ OpenAI Responses
{
  const c = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: 'sk-mock', maxRetries: 0 });
  const tools = [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { q: { type: 'string' } } }, strict: false }];
  await check('responses: non-stream', async () => {
    const r = await c.responses.create({ model: 'gpt-mock', input: PROMPT });
    eq(r.output_text, TEXT, 'output_text');
    eq([r.usage.input_tokens, r.usage.output_tokens], [4, 8], 'usage');
  });
  await check('responses: stream', async () => {
    const s = c.responses.stream({ model: 'gpt-mock', input: PROMPT });
    let deltas = '';
    s.on('response.output_text.delta', (e) => (deltas += e.delta));
    const r = await s.finalResponse();
    eq(deltas, TEXT, 'deltas');
    eq(r.output_text, TEXT, 'final output_text');
    eq(r.usage.total_tokens, 12, 'usage');
  });
  await check('responses: tool call + result round trip', async () => {
    const r = await c.responses.create({ model: 'gpt-mock', input: PROMPT, tools });
    const fc = r.output.find((o) => o.type === 'function_call');
    assert(/^call_mock\d+_1$/.test(fc.call_id) && /^fc_mock\d+_1$/.test(fc.id), 'ids', fc);
    eq(JSON.parse(fc.arguments), ARGS, 'arguments');
    const r2 = await c.responses.create({
      model: 'gpt-mock', tools,
      input: [{ role: 'user', content: PROMPT }, fc, { type: 'function_call_output', call_id: fc.call_id, output: 'sunny' }],
    });
    eq(r2.output_text, TEXT, 'answer');
    eq((await lastAttempt()).tool_results, [{ id: fc.call_id, content: 'sunny' }], 'attempt tool_results');
  });
  await check('responses: streamed tool call + reasoning', async () => {
    const s = c.responses.stream({ model: 'gpt-mock', input: PROMPT, tools, reasoning: { effort: 'low' } });
    const r = await s.finalResponse();
    eq(r.output.map((o) => o.type), ['reasoning', 'function_call'], 'output types');
    eq(JSON.parse(r.output[1].arguments), ARGS, 'arguments');
    eq(r.usage.output_tokens_details.reasoning_tokens, 3, 'reasoning_tokens');
  });
  await check('responses: cached usage, status=400 and response.failed', async () => {
    const r = await c.responses.create({ model: 'gpt-mock;cached=6;cache_write=2', input: PROMPT });
    eq([r.usage.input_tokens, r.usage.input_tokens_details.cached_tokens], [12, 6], 'usage');
    await rejects(() => c.responses.create({ model: 'gpt-mock;status=400;errcode=context_length_exceeded', input: PROMPT }),
      (e) => e.status === 400 && e.code === 'context_length_exceeded', 'status');
    const types = [];
    for await (const e of await c.responses.create({ model: 'gpt-mock;inband=0', input: PROMPT, stream: true })) types.push(e.type);
    eq(types, ['response.created', 'response.in_progress', 'response.failed'], 'event types');
  });
}

// ------------------------------------------------------------------ Anthropic
{
  const c = new Anthropic({ baseURL: BASE, apiKey: 'sk-ant-mock', maxRetries: 0 });
  const messages = [{ role: 'user', content: PROMPT }];
  const tools = [{ name: 'get_weather', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }];
  await check('anthropic: non-stream', async () => {
    const r = await c.messages.create({ model: 'claude-mock', max_tokens: 100, messages });
    eq(r.content[0].text, TEXT, 'text');
    eq(r.stop_reason, 'end_turn', 'stop_reason');
    eq([r.usage.input_tokens, r.usage.output_tokens], [4, 8], 'usage');
  });
  await check('anthropic: stream', async () => {
    const s = c.messages.stream({ model: 'claude-mock', max_tokens: 100, messages });
    let text = '';
    s.on('text', (t) => (text += t));
    const m = await s.finalMessage();
    eq(text, TEXT, 'text');
    eq(m.usage.output_tokens, 8, 'usage.output_tokens');
  });
  await check('anthropic: tool call + result round trip', async () => {
    const r = await c.messages.create({ model: 'claude-mock', max_tokens: 100, messages, tools });
    const tu = r.content.find((b) => b.type === 'tool_use');
    eq(r.stop_reason, 'tool_use', 'stop_reason');
    assert(/^toolu_mock\d+_1$/.test(tu.id), 'id', tu.id);
    eq(tu.input, ARGS, 'input');
    const r2 = await c.messages.create({
      model: 'claude-mock', max_tokens: 100, tools,
      messages: [...messages, { role: 'assistant', content: r.content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: tu.id, content: 'sunny' }] }],
    });
    eq(r2.content[0].text, TEXT, 'answer');
    eq((await lastAttempt()).tool_results, [{ id: tu.id, content: 'sunny' }], 'attempt tool_results');
  });
  await check('anthropic: streamed thinking + tool calls (tools=2) + cached usage', async () => {
    const s = c.messages.stream({ model: 'claude-mock;tools=2;cached=7;cache_write=3', max_tokens: 2000, messages, tools,
      thinking: { type: 'enabled', budget_tokens: 1024 } });
    const m = await s.finalMessage();
    eq(m.content.map((b) => b.type), ['thinking', 'tool_use', 'tool_use'], 'blocks');
    assert(/^mocksig\d+$/.test(m.content[0].signature), 'signature', m.content[0]);
    eq([m.content[1].input, m.content[2].input], [{ q: 'w1' }, { q: 'w2' }], 'inputs');
    eq([m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens, m.usage.output_tokens], [4, 7, 3, 9], 'usage');
  });
  await check('anthropic: status=529 and in-band overloaded_error', async () => {
    await rejects(() => c.messages.create({ model: 'claude-mock;status=529', max_tokens: 10, messages }),
      (e) => e.status === 529 && e.error?.error?.type === 'overloaded_error', 'status');
    await rejects(() => c.messages.stream({ model: 'claude-mock;inband=0', max_tokens: 10, messages }).finalMessage(),
      (e) => /overloaded_error/.test(e.message), 'inband');
  });
}

// ------------------------------------------------------------------ Gemini
{
  const ai = new GoogleGenAI({ apiKey: 'g-mock', httpOptions: { baseUrl: BASE } });
  const contents = [{ role: 'user', parts: [{ text: PROMPT }] }];
  const config = { tools: [{ functionDeclarations: [{ name: 'get_weather', parameters: { type: 'OBJECT', properties: { q: { type: 'STRING' } } } }] }] };
  await check('gemini: non-stream', async () => {
    const r = await ai.models.generateContent({ model: 'gemini-mock', contents });
    eq(r.text, TEXT, 'text');
    eq([r.usageMetadata.promptTokenCount, r.usageMetadata.candidatesTokenCount], [4, 8], 'usage');
  });
  await check('gemini: stream (SSE)', async () => {
    let text = '', last = null;
    for await (const ch of await ai.models.generateContentStream({ model: 'gemini-mock', contents })) {
      text += ch.text || '';
      last = ch;
    }
    eq(text, TEXT, 'text');
    eq(last.candidates[0].finishReason, 'STOP', 'finishReason');
    eq(last.usageMetadata.totalTokenCount, 12, 'usage');
  });
  await check('gemini: tool call + result round trip', async () => {
    const r = await ai.models.generateContent({ model: 'gemini-mock', contents, config });
    const fc = r.functionCalls[0];
    assert(/^call_mock\d+_1$/.test(fc.id), 'id', fc);
    eq(fc.args, ARGS, 'args');
    const r2 = await ai.models.generateContent({
      model: 'gemini-mock', config,
      contents: [...contents, r.candidates[0].content, { role: 'user', parts: [{ functionResponse: { id: fc.id, name: fc.name, response: { result: 'sunny' } } }] }],
    });
    eq(r2.text, TEXT, 'answer');
    eq((await lastAttempt()).tool_results, [{ id: fc.id, content: 'sunny' }], 'attempt tool_results');
  });
  await check('gemini: streamed thinking + tool calls (tools=2) + cached usage, model with directives', async () => {
    let calls = [], thought = null, last = null;
    for await (const ch of await ai.models.generateContentStream({ model: 'gemini-mock;tools=2;cached=5', contents,
      config: { ...config, thinkingConfig: { includeThoughts: true } } })) {
      for (const p of ch.candidates[0].content.parts) {
        if (p.functionCall) calls.push(p.functionCall.args);
        if (p.thought) thought = p;
      }
      last = ch;
    }
    eq(calls, [{ q: 'w1' }, { q: 'w2' }], 'calls');
    assert(thought && /^mocksig\d+$/.test(thought.thoughtSignature), 'thought', thought);
    const u = last.usageMetadata;
    eq([u.promptTokenCount, u.cachedContentTokenCount, u.candidatesTokenCount, u.thoughtsTokenCount], [9, 5, 6, 3], 'usage');
    eq((await lastAttempt()).model, 'gemini-mock;tools=2;cached=5', 'model decoded from the path');
  });
  await check('gemini: status=429 and in-band error', async () => {
    await rejects(() => ai.models.generateContent({ model: 'gemini-mock;status=429', contents }), (e) => e.status === 429, 'status');
    await rejects(async () => {
      for await (const _ of await ai.models.generateContentStream({ model: 'gemini-mock;inband=1', contents }));
    }, (e) => e.status === 503, 'inband');
  });
}

// ------------------------------------------------------------------ Bedrock Converse
{
  const c = new bedrock.BedrockRuntimeClient({ endpoint: BASE, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' }, maxAttempts: 1,
    requestHandler: new NodeHttpHandler() });
  const messages = [{ role: 'user', content: [{ text: PROMPT }] }];
  const toolConfig = { tools: [{ toolSpec: { name: 'get_weather', inputSchema: { json: { type: 'object', properties: { q: { type: 'string' } } } } } }] };
  const streamText = async (resp) => {
    const out = { text: '', tools: {}, stop: null, usage: null, reasoning: '', sig: '' };
    for await (const ev of resp.stream) {
      if (ev.contentBlockStart?.start?.toolUse) out.tools[ev.contentBlockStart.contentBlockIndex] = { ...ev.contentBlockStart.start.toolUse, input: '' };
      const d = ev.contentBlockDelta?.delta;
      if (d?.text) out.text += d.text;
      if (d?.toolUse) out.tools[ev.contentBlockDelta.contentBlockIndex].input += d.toolUse.input;
      if (d?.reasoningContent?.text) out.reasoning += d.reasoningContent.text;
      if (d?.reasoningContent?.signature) out.sig += d.reasoningContent.signature;
      if (ev.messageStop) out.stop = ev.messageStop.stopReason;
      if (ev.metadata) out.usage = ev.metadata.usage;
    }
    return out;
  };
  await check('bedrock: Converse', async () => {
    const r = await c.send(new bedrock.ConverseCommand({ modelId: 'anthropic.claude-mock-v1:0', messages }));
    eq(r.output.message.content[0].text, TEXT, 'text');
    eq(r.stopReason, 'end_turn', 'stopReason');
    eq([r.usage.inputTokens, r.usage.outputTokens], [4, 8], 'usage');
    const a = await lastAttempt();
    eq(a.model, 'anthropic.claude-mock-v1:0', 'modelId decoded from the path');
    assert(/^AWS4-HMAC-SHA256 /.test(a.authorization), 'SigV4 authorization logged', a.authorization);
  });
  await check('bedrock: ConverseStream', async () => {
    const o = await streamText(await c.send(new bedrock.ConverseStreamCommand({ modelId: 'claude-mock', messages })));
    eq(o.text, TEXT, 'text');
    eq(o.stop, 'end_turn', 'stopReason');
    eq(o.usage.totalTokens, 12, 'usage');
  });
  await check('bedrock: tool call + result round trip', async () => {
    const r = await c.send(new bedrock.ConverseCommand({ modelId: 'claude-mock', messages, toolConfig }));
    const tu = r.output.message.content.find((b) => b.toolUse).toolUse;
    eq(r.stopReason, 'tool_use', 'stopReason');
    assert(/^tooluse_mock\d+_1$/.test(tu.toolUseId), 'id', tu);
    eq(tu.input, ARGS, 'input');
    const r2 = await c.send(new bedrock.ConverseCommand({
      modelId: 'claude-mock', toolConfig,
      messages: [...messages, r.output.message, { role: 'user', content: [{ toolResult: { toolUseId: tu.toolUseId, content: [{ text: 'sunny' }] } }] }],
    }));
    eq(r2.output.message.content[0].text, TEXT, 'answer');
    eq((await lastAttempt()).tool_results, [{ id: tu.toolUseId, content: 'sunny' }], 'attempt tool_results');
  });
  await check('bedrock: streamed thinking + tool calls (tools=2) + cached usage', async () => {
    const o = await streamText(await c.send(new bedrock.ConverseStreamCommand({ modelId: 'claude-mock;tools=2;cached=5;cache_write=1', messages, toolConfig,
      additionalModelRequestFields: { thinking: { type: 'enabled', budget_tokens: 1024 } } })));
    eq(o.stop, 'tool_use', 'stopReason');
    eq(Object.values(o.tools).map((t) => JSON.parse(t.input)), [{ q: 'w1' }, { q: 'w2' }], 'inputs');
    eq(o.reasoning, 'Let me think.', 'reasoning');
    assert(/^mocksig\d+$/.test(o.sig), 'signature', o.sig);
    eq([o.usage.inputTokens, o.usage.cacheReadInputTokens, o.usage.cacheWriteInputTokens, o.usage.outputTokens], [4, 5, 1, 9], 'usage');
  });
  await check('bedrock: status=429 and in-band throttlingException', async () => {
    await rejects(() => c.send(new bedrock.ConverseCommand({ modelId: 'claude-mock;status=429', messages })),
      (e) => e.name === 'ThrottlingException' && e.$metadata.httpStatusCode === 429, 'status');
    await rejects(async () => streamText(await c.send(new bedrock.ConverseStreamCommand({ modelId: 'claude-mock;inband=2', messages }))),
      (e) => e.name === 'ThrottlingException', 'inband');
  });
}

// ------------------------------------------------------------------ Cohere v2
{
  const c = new CohereClientV2({ token: 'co-mock', environment: BASE, maxRetries: 0 });
  const messages = [{ role: 'user', content: PROMPT }];
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }];
  await check('cohere: chat', async () => {
    const r = await c.chat({ model: 'command-mock', messages });
    eq(r.message.content[0].text, TEXT, 'text');
    eq(r.finishReason, 'COMPLETE', 'finishReason');
    eq([r.usage.tokens.inputTokens, r.usage.tokens.outputTokens], [4, 8], 'usage');
  });
  await check('cohere: chatStream', async () => {
    let text = '', end = null;
    for await (const ev of await c.chatStream({ model: 'command-mock', messages })) {
      if (ev.type === 'content-delta') text += ev.delta.message.content.text;
      if (ev.type === 'message-end') end = ev;
    }
    eq(text, TEXT, 'text');
    eq(end.delta.finishReason, 'COMPLETE', 'finishReason');
    eq(end.delta.usage.billedUnits.outputTokens, 8, 'usage');
  });
  await check('cohere: tool call + result round trip', async () => {
    const r = await c.chat({ model: 'command-mock', messages, tools });
    const tc = r.message.toolCalls[0];
    eq(r.finishReason, 'TOOL_CALL', 'finishReason');
    assert(/^call_mock\d+_1$/.test(tc.id), 'id', tc);
    eq(JSON.parse(tc.function.arguments), ARGS, 'arguments');
    const r2 = await c.chat({
      model: 'command-mock', tools,
      messages: [...messages, { role: 'assistant', toolCalls: r.message.toolCalls, toolPlan: r.message.toolPlan },
        { role: 'tool', toolCallId: tc.id, content: 'sunny' }],
    });
    eq(r2.message.content[0].text, TEXT, 'answer');
    eq((await lastAttempt()).tool_results, [{ id: tc.id, content: 'sunny' }], 'attempt tool_results');
  });
  await check('cohere: streamed thinking + tool calls (tools=2) + cached usage', async () => {
    const calls = {};
    let thinking = '', plan = '', end = null;
    for await (const ev of await c.chatStream({ model: 'command-mock;tools=2;cached=5', messages, tools, thinking: { type: 'enabled' } })) {
      if (ev.type === 'content-delta') thinking += ev.delta.message.content.thinking || '';
      if (ev.type === 'tool-plan-delta') plan += ev.delta.message.toolPlan;
      if (ev.type === 'tool-call-start') calls[ev.index] = ev.delta.message.toolCalls.function.arguments;
      if (ev.type === 'tool-call-delta') calls[ev.index] += ev.delta.message.toolCalls.function.arguments;
      if (ev.type === 'message-end') end = ev;
    }
    eq(thinking, 'Let me think.', 'thinking');
    assert(plan.length > 0, 'tool plan');
    eq(Object.values(calls).map((a) => JSON.parse(a)), [{ q: 'w1' }, { q: 'w2' }], 'arguments');
    eq(end.delta.finishReason, 'TOOL_CALL', 'finishReason');
    eq([end.delta.usage.tokens.inputTokens, end.delta.usage.cachedTokens, end.delta.usage.tokens.outputTokens], [9, 5, 9], 'usage');
  });
  await check('cohere: status=429 and in-band error', async () => {
    await rejects(() => c.chat({ model: 'command-mock;status=429', messages }), (e) => e.statusCode === 429, 'status');
    let end = null;
    for await (const ev of await c.chatStream({ model: 'command-mock;inband=1', messages })) if (ev.type === 'message-end') end = ev;
    eq(end.delta.finishReason, 'ERROR', 'finishReason');
  });
}

console.log(failed ? `${failed} failed` : 'all passed');
process.exit(failed ? 1 : 0);
