export interface CorsPolicy {
  /** Exact origins, or ["*"]. */
  origins: string[]
  methods: string[]
  /** Empty: reflect Access-Control-Request-Headers (Hono's default). */
  headers: string[]
  exposeHeaders: string[]
  maxAgeSeconds?: number
  credentials: boolean
}
