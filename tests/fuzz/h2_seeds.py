#!/usr/bin/env python3
"""Write HTTP/2 seeds for fuzz_request (h2c with prior knowledge: each file is the byte stream
of one client connection) into tests/fuzz/corpus/request/h2-*. HPACK literals without
indexing or Huffman, so the fuzzer's mutations stay meaningful.

    python3 tests/fuzz/h2_seeds.py [outdir]"""
import json
import os
import struct
import sys

KEY = 'sk-fuzz-all-0123456789'   # fuzz_request.c's KEY_ALL
PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
DATA, HEADERS, PRIORITY, RST, SETTINGS, PING, GOAWAY, WINDOW, CONT = 0, 1, 2, 3, 4, 6, 7, 8, 9


def frame(t, flags, sid, payload=b''):
    return struct.pack('>I', len(payload))[1:] + bytes([t, flags]) + struct.pack('>I', sid) + payload


def hint(n, bits):
    top = (1 << bits) - 1
    if n < top:
        return bytes([n])
    out, n = [top], n - top
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    return bytes(out + [n])


def hpack(hs):
    return b''.join(b'\x00' + hint(len(k), 7) + k.encode() + hint(len(v), 7) + v.encode()
                    for k, v in hs)


def req(sid, path, body=None, method='POST', extra=(), split=False, trailers=False):
    hs = [(':method', method), (':scheme', 'http'), (':path', path), (':authority', 'fuzz'),
          ('authorization', 'Bearer ' + KEY), ('content-type', 'application/json')] + list(extra)
    if body is not None:
        hs.append(('content-length', str(len(body))))
    block = hpack(hs)
    end = 0x1 if body is None else 0
    if split:
        half = len(block) // 2
        out = frame(HEADERS, end, sid, block[:half]) + frame(CONT, 0x4, sid, block[half:])
    else:
        out = frame(HEADERS, 0x4 | end, sid, block)
    if body is not None:
        b = body.encode()
        if trailers:
            out += frame(DATA, 0, sid, b) + frame(HEADERS, 0x5, sid, hpack([('x-t', '1')]))
        else:
            out += frame(DATA, 0, sid, b[:len(b) // 2]) + frame(DATA, 0x1, sid, b[len(b) // 2:])
    return out


def chat(model='p', stream=False):
    return json.dumps({'model': model, 'stream': stream,
                       'messages': [{'role': 'user', 'content': 'hi'}]})


START = PREFACE + frame(SETTINGS, 0, 0, struct.pack('>HI', 3, 100))
SEEDS = {
    'chat': req(1, '/v1/chat/completions', chat()),
    'chat-stream': req(1, '/v1/chat/completions', chat(stream=True)),
    'multi': b''.join(req(2 * i + 1, '/v1/chat/completions', chat(m))
                      for i, m in enumerate(['p', 't', 'mix', 'q', 'two'])),
    'anthropic': req(1, '/v1/messages', json.dumps({'model': 't', 'max_tokens': 5,
                                                    'messages': [{'role': 'user',
                                                                  'content': 'hi'}]}),
                     extra=[('anthropic-version', '2023-06-01')], split=True),
    'gemini': req(1, '/v1beta/models/g_gemini:generateContent',
                  json.dumps({'contents': [{'parts': [{'text': 'hi'}]}]}), trailers=True),
    'bedrock': req(1, '/model/g_bedrock/converse',
                   json.dumps({'messages': [{'role': 'user', 'content': [{'text': 'hi'}]}]})),
    'cohere': req(1, '/v2/chat', chat('g_cohere')),
    'responses': req(1, '/v1/responses', json.dumps({'model': 'g_responses', 'input': 'hi'})),
    'gets': req(1, '/v1/models', method='GET') + req(3, '/healthz', method='GET') +
            req(5, '/nope', method='GET') + req(7, '/v1/chat/completions', method='GET'),
    'reset': req(1, '/v1/chat/completions', chat()) + frame(RST, 0, 1, struct.pack('>I', 8)) +
             req(3, '/v1/chat/completions', '{"model":') + frame(RST, 0, 3, struct.pack('>I', 8)),
    'control': frame(PING, 0, 0, b'12345678') + frame(WINDOW, 0, 0, struct.pack('>I', 1 << 20)) +
               frame(PRIORITY, 0, 1, struct.pack('>IB', 0, 16)) +
               req(1, '/v1/chat/completions', chat()) + frame(GOAWAY, 0, 0, b'\0' * 8),
    'bigheader': req(1, '/v1/chat/completions', chat(), extra=[('x-big', 'a' * 9000)]),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'corpus', 'request')
    os.makedirs(out, exist_ok=True)
    for name, body in SEEDS.items():
        with open(os.path.join(out, 'h2-' + name), 'wb') as f:
            f.write(START + body)


if __name__ == '__main__':
    main()
