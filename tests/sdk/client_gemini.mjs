// client_gemini.mjs: @google/genai against busbar's POST /v1beta/models/{model}:generateContent
// and :streamGenerateContent?alt=sse. One module of the SDK matrix (matrix.mjs, README.md).
import { GoogleGenAI, Type } from '@google/genai';
import { PROMPT, TOOL, TOOL_PROMPT, TOOL_RESULT, TIMEOUT_MS } from './common.mjs';

export const sdk = '@google/genai';
// Gemini ends a function-call turn with STOP too.
export const STOP = { text: 'STOP', tool: 'STOP' };

function client(base) {
  // No retryOptions: the SDK does not retry.
  return new GoogleGenAI({ apiKey: process.env.BB_SDK_KEY || 'bb-unused', httpOptions: { baseUrl: base, timeout: TIMEOUT_MS } });
}
const usageOf = (u) => (u ? { input: u.promptTokenCount, output: u.candidatesTokenCount } : null);

export async function nonStream(base, model) {
  const r = await client(base).models.generateContent({ model, contents: PROMPT });
  return { text: r.text, stop: r.candidates?.[0]?.finishReason, usage: usageOf(r.usageMetadata) };
}

export async function stream(base, model) {
  const s = await client(base).models.generateContentStream({ model, contents: PROMPT });
  let text = '';
  let deltas = 0;
  let stop = null;
  let usage = null;
  for await (const chunk of s) {
    const t = chunk.text;
    if (t) {
      text += t;
      deltas++;
    }
    const fr = chunk.candidates?.[0]?.finishReason;
    if (fr) stop = fr;
    if (chunk.usageMetadata) usage = usageOf(chunk.usageMetadata);
  }
  return { text, deltas, stop, usage };
}

export async function toolRoundTrip(base, model) {
  const ai = client(base);
  const config = {
    tools: [
      {
        functionDeclarations: [
          {
            name: TOOL.name,
            description: TOOL.description,
            parameters: {
              type: Type.OBJECT,
              properties: { q: { type: Type.STRING, description: 'the word to look up' } },
              required: ['q'],
            },
          },
        ],
      },
    ],
  };
  const contents = [{ role: 'user', parts: [{ text: TOOL_PROMPT }] }];
  const r1 = await ai.models.generateContent({ model, contents, config });
  const calls = (r1.functionCalls || []).map((fc) => ({ id: fc.id, name: fc.name, args: fc.args }));
  const out = { calls, stop1: r1.candidates?.[0]?.finishReason };
  if (calls.length !== 1) return out;
  contents.push(r1.candidates[0].content);
  // As Google's function-calling guide does it: the response names the function (no id);
  // busbar must pair it with the call in the history and send the provider's id back.
  contents.push({
    role: 'user',
    parts: [{ functionResponse: { name: calls[0].name, response: { result: TOOL_RESULT } } }],
  });
  const r2 = await ai.models.generateContent({ model, contents, config });
  out.text = r2.text;
  out.stop2 = r2.candidates?.[0]?.finishReason;
  return out;
}
