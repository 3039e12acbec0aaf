// The transport-independent part of @meshwork/sdk: every service's client over any Connect
// transport, and the options both connect() functions share. Hand-written.
export { SERVICES, createClients } from "../gen/clients.js";
export { create } from "@bufbuild/protobuf";
export { Code, ConnectError } from "@connectrpc/connect";

/** Milliseconds a call may take when the caller gives no `timeoutMs`. */
export const DEFAULT_TIMEOUT_MS = 10000;

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * Returns the transport options of connect(): the default deadline, and an interceptor that
 * sends the token and the caller's W3C traceparent on every call that has none of its own.
 */
export function transportOptions(baseUrl, options = {}) {
  const { timeoutMs = DEFAULT_TIMEOUT_MS, token, traceparent, headers = {}, interceptors = [] } = options;
  const defaults = (next) => async (req) => {
    for (const [key, value] of Object.entries(headers)) if (!req.header.has(key)) req.header.set(key, value);
    if (token && !req.header.has("authorization")) req.header.set("authorization", `Bearer ${token}`);
    const current = typeof traceparent === "function" ? traceparent() : traceparent;
    if (current && !req.header.has("traceparent") && TRACEPARENT.test(current) && !current.startsWith("ff")) {
      req.header.set("traceparent", current);
    }
    return next(req);
  };
  return { baseUrl, defaultTimeoutMs: timeoutMs ?? undefined, interceptors: [defaults, ...interceptors] };
}
