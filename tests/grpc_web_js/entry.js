// The official grpc-web JS client (npm `grpc-web`, no generated code: hand-written message
// classes) calling meshwork's gateway in text and binary mode from a page of another origin.
// Bundled and run by scripts/check-grpc-web-js.sh; prints one line per call into #out.
const { GrpcWebClientBase, MethodDescriptor, MethodType } = require("grpc-web");
const enc = new TextEncoder(), dec = new TextDecoder();
function field(tag, s) { const b = enc.encode(s); return [(tag << 3) | 2, b.length, ...b]; }
function firstString(bytes) { // field 1, length < 128
  return bytes[0] === 0x0a ? dec.decode(bytes.subarray(2, 2 + bytes[1])) : "";
}
class Req { constructor(bytes) { this.bytes = bytes; } serializeBinary() { return Uint8Array.from(this.bytes); } }
class Resp { constructor(bytes) { this.first = firstString(bytes); } static deserializeBinary(b) { return new Resp(b); } }
const SVC = "/meshwork.urlshortener.v1.UrlShortener/";
const md = (m) => new MethodDescriptor(SVC + m, MethodType.UNARY, Req, Resp, (r) => r.serializeBinary(), Resp.deserializeBinary);
function call(format, method, bytes) {
  return new Promise((resolve) => {
    const client = new GrpcWebClientBase({ format });
    let result = {};
    const stream = client.rpcCall(window.GATEWAY + SVC + method, new Req(bytes), {}, md(method), (err, resp) => {
      result.err = err ? { code: err.code, message: err.message, metadata: err.metadata } : null;
      result.value = resp ? resp.first : null;
    });
    stream.on("status", (s) => { result.status = s.code; result.statusMeta = s.metadata; });
    stream.on("end", () => resolve(result));
    setTimeout(() => resolve(result), 3000);
  });
}
(async () => {
  const lines = [];
  for (const format of ["text", "binary"]) {
    const s = await call(format, "Shorten", field(1, "https://example.com/grpc-web-js-" + format));
    lines.push(`${format} shorten err=${JSON.stringify(s.err)} code=${s.value} status=${s.status}`);
    const r = await call(format, "Resolve", [...field(1, s.value), 0x18, 1]);
    lines.push(`${format} resolve err=${JSON.stringify(r.err)} url=${r.value} status=${r.status}`);
    const m = await call(format, "Resolve", [...field(1, "nosuchcode5"), 0x18, 1]);
    lines.push(`${format} missing err=${JSON.stringify(m.err)} status=${m.status}`);
  }
  document.getElementById("out").textContent = lines.join("\n");
})();
