// common.mjs: what every client module of the SDK matrix shares (see README.md): the prompt,
// the tool the model is offered, the tool result sent back, and the per-request limits.
// No retries anywhere: a busbar bug must not be hidden by an SDK's retry loop.

export const PROMPT = 'say the deterministic words'; // 4 words: the mock's prompt token count
export const TOOL_PROMPT = 'look up the first word';
export const TOOL = {
  name: 'lookup',
  description: 'Look a word up in the test dictionary',
  schema: {
    type: 'object',
    properties: { q: { type: 'string', description: 'the word to look up' } },
    required: ['q'],
  },
};
export const TOOL_RESULT = 'lookup-result-r42x';
export const TIMEOUT_MS = Number(process.env.SDK_TIMEOUT_MS || 8000);
