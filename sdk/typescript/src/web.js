// connect() for browsers: gRPC-Web (@connectrpc/connect-web) straight to a meshwork gateway,
// whose CORS settings must allow the page's origin.
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createClients } from "../gen/clients.js";
import { transportOptions } from "./index.js";

export * from "./index.js";

/** Returns a client for every service over gRPC-Web to `baseUrl` ("http://127.0.0.1:8080"). */
export function connect(baseUrl, options = {}) {
  return createClients(createGrpcWebTransport(transportOptions(baseUrl, options)));
}
