// h2_openai.mjs: the official openai SDK over HTTP/2. The SDK's fetch is undici's, through an
// Agent with allowH2: on a TLS endpoint ALPN offers h2 and busbar selects it. Run by
// tests/integration/test_http2.py (test_openai_sdk_h2_tls); not part of the SDK matrix.
//
// Env: BB_URL (https://localhost:PORT/v1), BB_CA (the CA file), BB_MODEL.
// Prints one JSON line: {text, streamText, deltas, alpn: [protocol of each connection]}.
import fs from 'node:fs';
import OpenAI from 'openai';
import { Agent, buildConnector, fetch } from 'undici';
import { TIMEOUT_MS } from './common.mjs';

const alpn = [];
const connect = buildConnector({ ca: fs.readFileSync(process.env.BB_CA), allowH2: true });
const dispatcher = new Agent({
  allowH2: true,
  connect: (opts, cb) =>
    connect(opts, (err, socket) => {
      if (socket) alpn.push(socket.alpnProtocol);
      cb(err, socket);
    }),
});

const client = new OpenAI({
  apiKey: 'bb-unused',
  baseURL: process.env.BB_URL,
  maxRetries: 0,
  timeout: TIMEOUT_MS,
  fetch,
  fetchOptions: { dispatcher },
});
const messages = [{ role: 'user', content: 'say hello' }];
const r = await client.chat.completions.create({ model: process.env.BB_MODEL, messages });
const s = await client.chat.completions.create({ model: process.env.BB_MODEL, messages, stream: true });
let streamText = '';
let deltas = 0;
for await (const chunk of s) {
  const t = chunk.choices?.[0]?.delta?.content;
  if (t) {
    streamText += t;
    deltas++;
  }
}
process.stdout.write(JSON.stringify({ text: r.choices[0].message.content, streamText, deltas, alpn }) + '\n');
await dispatcher.close();
