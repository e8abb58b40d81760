/** Structured log lines, one JSON object each; the runtime decides where they go. */
export type LogLevel = 'info' | 'warn' | 'error'

export interface Logger {
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void
}

export function jsonLogger(write: (line: string) => void, service: string): Logger {
  return {
    log(level, msg, fields) {
      write(JSON.stringify({ time: new Date().toISOString(), level, service, msg, ...fields }))
    },
  }
}
