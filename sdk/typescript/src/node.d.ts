import type { Clients } from "../gen/clients.js";
import type { ConnectOptions } from "./index.js";
export * from "./index.js";
/** Returns a client for every service over gRPC to `baseUrl` ("http://127.0.0.1:8080"). */
export declare function connect(baseUrl: string, options?: ConnectOptions): Clients;
