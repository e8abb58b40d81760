export interface LimitsPolicy {
  maxBodyBytes: number
  maxHeaderBytes: number
  maxUrlLength: number
  /** Methods the route accepts; others get 405 with Allow. Undefined: any. */
  methods?: string[]
  /** Deadline for reading the request body; 0 is off. Also the listener's header deadline where the runtime has one. */
  clientTimeoutMs: number
}
