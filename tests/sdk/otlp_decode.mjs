// otlp_decode.mjs FILE...: decode OTLP/HTTP protobuf trace export bodies with the OpenTelemetry
// JS project's generated OTLP protobuf types (@opentelemetry/otlp-transformer 0.52, protobufjs)
// and print them as one JSON array in the OTLP/JSON mapping (ids hex, 64-bit integers as
// decimal strings, enums as numbers), so the test checks both encodings with the same code.
// Run by tests/integration/test_observability.py.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root.js');
const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

const hex = (b) => Buffer.from(b).toString('hex');

function value(v) {
  if (v.stringValue !== undefined) return { stringValue: v.stringValue };
  if (v.intValue !== undefined) return { intValue: String(v.intValue) };
  if (v.doubleValue !== undefined) return { doubleValue: v.doubleValue };
  if (v.boolValue !== undefined) return { boolValue: v.boolValue };
  throw new Error('unexpected AnyValue ' + JSON.stringify(v));
}

const attrs = (a) => (a || []).map((kv) => ({ key: kv.key, value: value(kv.value) }));

const out = process.argv.slice(2).map((file) => {
  const m = Req.toObject(Req.decode(readFileSync(file)), { longs: String, enums: Number });
  return {
    resourceSpans: (m.resourceSpans || []).map((rs) => ({
      resource: { attributes: attrs(rs.resource && rs.resource.attributes) },
      scopeSpans: (rs.scopeSpans || []).map((ss) => ({
        scope: ss.scope,
        spans: (ss.spans || []).map((s) => {
          const o = {
            traceId: hex(s.traceId),
            spanId: hex(s.spanId),
            name: s.name,
            kind: s.kind,
            startTimeUnixNano: String(s.startTimeUnixNano),
            endTimeUnixNano: String(s.endTimeUnixNano),
            attributes: attrs(s.attributes),
          };
          if (s.parentSpanId && s.parentSpanId.length) o.parentSpanId = hex(s.parentSpanId);
          if (s.status && s.status.code) o.status = { code: s.status.code, message: s.status.message };
          return o;
        }),
      })),
    })),
  };
});
process.stdout.write(JSON.stringify(out));
