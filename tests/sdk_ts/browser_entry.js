// The browser half of the TypeScript SDK check: bundled with esbuild from the npm-installed
// @meshwork/sdk/web, loaded by headless Chromium from another origin than the gateway's, it calls
// the mesh with gRPC-Web, writes what it saw into #out and posts it back to the page's own server
// (the test waits for that post in real time, not on Chromium's virtual clock).
import { connect, Code, ConnectError } from "@meshwork/sdk/web";

(async () => {
  const out = document.getElementById("out");
  const lines = [];
  try {
    // No traceparent here: `meshwork up`'s CORS preflight does not allow that header yet.
    const mesh = connect(window.GATEWAY, { timeoutMs: 60000 });
    const got = await mesh.echo.echo({ message: "from the browser" });
    lines.push("echo=" + got.message, "deadline=" + ("grpc-timeout" in got.metadata));
    const link = await mesh.urlShortener.shorten({ longUrl: "https://example.com/ts-web" });
    const resolved = await mesh.urlShortener.resolve({ code: link.code, skipClick: true });
    lines.push("resolved=" + resolved.longUrl);
    try {
      await mesh.urlShortener.resolve({ code: "nosuch7" });
      lines.push("missing=no error");
    } catch (e) {
      const err = ConnectError.from(e);
      lines.push("missing=" + Code[err.code], "state=" + (err.metadata.get("meshwork-link-state") ?? ""));
    }
    const seqs = [];
    for await (const r of mesh.echo.echoStream({ message: "s", count: 3 })) seqs.push(Number(r.sequence));
    lines.push("stream=" + seqs.join(","));
    out.dataset.done = "true";
  } catch (e) {
    lines.push("error=" + e);
    out.dataset.done = "error";
  }
  out.textContent = lines.join("\n");
  await fetch("/report", { method: "POST", body: out.dataset.done + "\n" + out.textContent });
})();
