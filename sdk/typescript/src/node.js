// connect() for Node: gRPC over HTTP/2 (@connectrpc/connect-node) to a meshwork gateway.
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createClients } from "../gen/clients.js";
import { transportOptions } from "./index.js";

export * from "./index.js";

/** Returns a client for every service over gRPC to `baseUrl` ("http://127.0.0.1:8080"). */
export function connect(baseUrl, options = {}) {
  return createClients(createGrpcTransport(transportOptions(baseUrl, options)));
}
