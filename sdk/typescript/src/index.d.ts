import type { Interceptor } from "@connectrpc/connect";
export { SERVICES, createClients, type Clients } from "../gen/clients.js";
export { create } from "@bufbuild/protobuf";
export { Code, ConnectError } from "@connectrpc/connect";

/** Milliseconds a call may take when the caller gives no `timeoutMs`. */
export declare const DEFAULT_TIMEOUT_MS: number;

export interface ConnectOptions {
  /** Deadline of every call that passes no `timeoutMs` (default 10000; `null`: none). */
  timeoutMs?: number | null;
  /** Sent as `authorization: Bearer <token>`. */
  token?: string;
  /** The caller's W3C traceparent, or a function returning the current one. */
  traceparent?: string | (() => string | undefined);
  /** More headers for every call. */
  headers?: Record<string, string>;
  /** More interceptors, after the SDK's own. */
  interceptors?: Interceptor[];
}

export declare function transportOptions(
  baseUrl: string,
  options?: ConnectOptions,
): { baseUrl: string; defaultTimeoutMs?: number; interceptors: Interceptor[] };
