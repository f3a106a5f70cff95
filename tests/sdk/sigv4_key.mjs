// sigv4_key.mjs: Bedrock Converse through busbar, signed with SigV4 by the official
// @aws-sdk/client-bedrock-runtime using a virtual key's AWS pair (busbarctl keys create --aws).
// Run by tests/integration/test_governance.py (test_sigv4_sdk); not part of the SDK matrix.
//
// Env: BB_URL (busbar), BB_MODEL (pool or model), BB_PROMPT (user text),
//      BB_CALLS = JSON [{"id": ACCESS_KEY_ID, "secret": SECRET_ACCESS_KEY}, ...]
// Prints one JSON line: an array with one result per call, in order:
//   {"ok": true, "text", "stop", "usage", "requestId"}            (the x-request-id busbar sent)
//   {"ok": false, "status", "name", "message"}                    (the SDK's exception)
// No retries (maxAttempts 1): a refusal must show, not be retried away.
// The client's default request handler (NodeHttp2Handler: h2c on an http:// endpoint), so the
// signature busbar checks came over HTTP/2 (host from :authority).
import { BedrockRuntimeClient, ConverseCommand } from '@aws-sdk/client-bedrock-runtime';

const TIMEOUT_MS = Number(process.env.SDK_TIMEOUT_MS || 8000);
const calls = JSON.parse(process.env.BB_CALLS || '[]');
const results = [];

for (const cred of calls) {
  let requestId = null;
  const client = new BedrockRuntimeClient({
    endpoint: process.env.BB_URL,
    region: 'us-east-1',
    credentials: { accessKeyId: cred.id, secretAccessKey: cred.secret },
    maxAttempts: 1,
  });
  // busbar's request id is a response header; the SDK keeps only AWS's own ones
  client.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      requestId = out.response?.headers?.['x-request-id'] ?? null;
      return out;
    },
    { step: 'deserialize', name: 'bbRequestId' },
  );
  try {
    const r = await client.send(
      new ConverseCommand({
        modelId: process.env.BB_MODEL,
        messages: [{ role: 'user', content: [{ text: process.env.BB_PROMPT || 'hello' }] }],
      }),
      { abortSignal: AbortSignal.timeout(TIMEOUT_MS) },
    );
    const text = (r.output?.message?.content || []).filter((b) => 'text' in b).map((b) => b.text).join('');
    results.push({ ok: true, text, stop: r.stopReason, usage: r.usage, requestId });
  } catch (e) {
    results.push({ ok: false, status: e.$metadata?.httpStatusCode ?? null, name: e.name, message: String(e.message) });
  }
}
console.log(JSON.stringify(results));
