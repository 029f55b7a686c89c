// Type declarations of the mcpopt Node binding.

export declare const ABI_VERSION: number;

export declare const Status: Readonly<{
  OK: 0; INVALID_ARGUMENT: 1; INVALID_UTF8: 2; MALFORMED_JSON: 3; INVALID_CONFIG: 4;
  INVALID_HANDLE: 5; NOT_FOUND: 6; TOO_LARGE: 7; UNSUPPORTED: 8; BUFFER_TOO_SMALL: 9;
  CONFLICT: 10; UNAVAILABLE: 11; INTERNAL: 99;
}>;

/** One problem in a configuration: the JSON path of the field and what is wrong with it. */
export interface Issue { path: string; message: string; }

/** An error from libmcpopt. */
export declare class MCPOptError extends Error {
  readonly status: number;
  readonly statusName: string;
  readonly issues: Issue[];
}

/** The configuration is not valid JSON, or not a valid configuration (see `issues`). */
export declare class ConfigError extends MCPOptError {}

export type Config = Record<string, unknown> | string | Buffer;

export interface EngineDescription {
  version: string;
  allocator: 'jemalloc' | 'system';
  servers: { configured: number; active: number; stdio: number; http: number; groups: Record<string, string[]> };
  config: Record<string, unknown>;
}

export interface Versioned { value: Buffer; version: string; }

export declare class State {
  /** Stores a value; returns its version stamp ("<ms>.<counter>@<node>"). */
  put(key: string, value: string | Buffer): string;
  get(key: string): Versioned | null;
  /**
   * Stores a value only if the key is still at `expectedVersion` (null/undefined: it must have no
   * value); returns the new version stamp.
   * @throws MCPOptError with status CONFLICT when the key is at another version (nothing written),
   * INVALID_ARGUMENT for a version that is not a stamp, UNAVAILABLE (strong consistency) when Redis is down.
   */
  compareAndSet(key: string, value: string | Buffer, expectedVersion: string | null | undefined): string;
  /** False when the key had no value. */
  delete(key: string): boolean;
  /** Calls listener for every change under prefix (asynchronously, on the JS thread); returns a stop function. */
  watch(prefix: string, listener: (key: string, value: Buffer, version: string, deleted: boolean) => void): () => void;
}

export interface CacheOptions {
  /** Time to live in milliseconds. */
  ttl?: number;
  /** Invalidated together; lives at most caching.coherenceTimeout. */
  coherenceGroup?: string;
  tags?: string[];
}

export interface CacheStats {
  hits: number; misses: number; hitRate: number; sets: number; items: number;
  evictions: number; expirations: number; invalidations: number; rejectedFills: number; rebalances: number;
  memoryBudget: number; pageBytes: number; bytesUsed: number; overheadBytes: number;
  pageSize: number; shards: number; pageSource: 'jemalloc' | 'mmap';
  classes: { chunkSize: number; pages: number; items: number; bytesUsed: number; payloadBytes: number }[];
}

export declare class Cache {
  /** @throws MCPOptError with status TOO_LARGE for an item over the largest kept. */
  set(key: string | Buffer, value: string | Buffer, options?: CacheOptions): void;
  get(key: string | Buffer): Buffer | null;
  delete(key: string | Buffer): boolean;
  /** Glob over keys ("Read:/src/*"); returns how many items went. */
  invalidate(pattern: string): number;
  invalidateGroup(group: string): number;
  invalidateTag(tag: string): number;
  clear(): void;
  stats(): CacheStats;
  hotKeys(limit?: number): { key?: string; keyHex?: string; accessCount: number }[];
}

export interface RouteRequirements {
  maxResponseTime?: string | number;
  minSuccessRate?: number;
  strategy?: 'predictive' | 'adaptive' | 'peakEWMA' | 'leastOutstanding' | 'consistentHash';
  affinityKey?: string;
  allowedServers?: string[];
}

export interface RoutingDecision {
  outcome: 'chosen' | 'last-resort' | 'unknown-tool' | 'no-server-meets-requirements' | 'no-candidates';
  server: string | null;
  fallbacks: string[];
  confidence: number;
  predictedLatencyMs: number | null;
  strategy: string;
  probe: boolean;
  reasoning: string;
  decisionTimeNs: number;
}

export declare class Router {
  route(request: string | Record<string, unknown>, requirements?: RouteRequirements, options?: { agent?: string; maxFallbacks?: number }): RoutingDecision;
  registerServer(server: { id: string; transport?: 'stdio' | 'http'; group?: string; weight?: number; tags?: string[];
    tools?: unknown[] | { tools: unknown[] }; resources?: string[]; prompts?: string[]; health?: 'unknown' | 'healthy' | 'degraded' | 'unhealthy' }): void;
  setTools(server: string, tools: unknown[] | { tools: unknown[] }): void;
  removeServer(server: string): boolean;
  /** latencyMs in milliseconds. */
  record(server: string, tool: string, latencyMs: number, success?: boolean): void;
  stats(): Record<string, unknown>;
}

export interface CoordinationOptions {
  /** 'fanout' (default): call the tool on every server; 'transaction': a two-phase commit. */
  mode?: 'fanout' | 'transaction';
  /** Fan-out: when it has succeeded. 'quorum' needs `quorum`; 'quorum' and 'first' cancel the rest once decided. */
  policy?: 'all' | 'quorum' | 'first';
  quorum?: number;
  /** Calls in flight at once (default coordination.fanOutConcurrency). */
  concurrency?: number;
  /** Per server (fan-out), or for the prepare phase (transaction). */
  timeoutMs?: number;
  /** Default: the operation's name and a random suffix. */
  transactionId?: string;
  agent?: string;
}

/** One call of a multi-server operation. */
export interface ServerCall {
  server: string;
  /** Default: the operation's name. */
  tool?: string;
  /** Default: {}. In transaction mode, the participant's prepare payload. */
  arguments?: unknown;
}

export interface FanOutEntry {
  status: 'success' | 'error' | 'timeout' | 'cancelled';
  success: boolean;
  latencyMs: number;
  /** The tool result (a tools/call result object), when the server answered. */
  result?: Record<string, unknown> | null;
  error?: string;
}

export interface CoordinationResult {
  operation: string;
  mode: 'fanout' | 'transaction';
  /** False for a failed fan-out or an aborted transaction. */
  success: boolean;
  durationMs: number;
  /** Fan-out: "all", "quorum(n)" or "first". */
  policy?: string;
  size?: number;
  succeeded?: number;
  failed?: number;
  results?: Record<string, FanOutEntry>;
  /** Transaction. */
  transactionId?: string;
  committed?: boolean;
  /** Why it aborted, or null. */
  reason?: string | null;
  /** Participants not yet told the decision. */
  unacknowledged?: string[];
}

export interface RecoveredTransaction {
  transactionId: string;
  committed: boolean;
  unacknowledged: string[];
}

export declare class Engine {
  /** @throws ConfigError when the configuration is invalid. */
  constructor(config: Config);
  readonly closed: boolean;
  readonly state: State;
  readonly cache: Cache;
  readonly router: Router;
  /** Shorthand for engine.router.route. */
  route(request: string | Record<string, unknown>, requirements?: RouteRequirements, options?: { agent?: string }): RoutingDecision;
  describe(): EngineDescription;
  /**
   * Runs `operation` on every one of `servers` with the same arguments (`data`): a fan-out, or a
   * two-phase commit (mode 'transaction') whose participants get `data` as prepare payload.
   * @throws MCPOptError (rejects) with status INVALID_ARGUMENT for an unknown server or a bad
   * option, UNSUPPORTED for a transaction when coordination.enableDistributedTransactions is off.
   */
  coordinateOperation(operation: string, servers: string[], data?: unknown, options?: CoordinationOptions): Promise<CoordinationResult>;
  /** Like coordinateOperation, with a tool and arguments per server. */
  coordinateMultiServerOperation(operation: string, calls: ServerCall[], options?: CoordinationOptions): Promise<CoordinationResult>;
  /** Finishes the transactions the decision log left unfinished; rejects with UNSUPPORTED when transactions are off. */
  recoverTransactions(): Promise<RecoveredTransaction[]>;
  /** Releases the engine; closing twice is harmless. */
  close(): void;
  [Symbol.dispose](): void;
}

/** Every problem in `config` (empty when valid). */
export declare function validateConfig(config: Config): Issue[];
export declare function version(): string;
export declare function statusString(status: number): string;
