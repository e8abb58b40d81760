export interface WebSocketPolicy {
  enabled: boolean
  idleTimeoutMs: number
  maxMessageBytes: number
  /** Open connections the route carries at once; undefined: no limit of its own. */
  maxConnections?: number
}
