import type { DiscoveryHost } from '../core/host.ts'
import { parseEndpointFile } from './endpoint-file.ts'
import { addressUrl } from './endpoint-url.ts'
import type { Timers } from '../core/timers.ts'
import type { DiscoveryConfig, EndpointConfig } from './config.ts'

/** Where a discovery round's outcome goes; the upstream decides what is new and what to announce. */
export interface DiscoveryListener {
  updated(endpoints: EndpointConfig[]): void
  failed(reason: string): void
}

/** "dns payments.internal:8080", "file /etc/pillion/endpoints.json": for the admin API. */
export function describeDiscovery(config: DiscoveryConfig): { source: 'dns' | 'file'; target: string } {
  if ('dns' in config) {
    const { host, port } = config.dns
    return { source: 'dns', target: `${host.includes(':') ? `[${host}]` : host}:${port}` }
  }
  return { source: 'file', target: config.file.path }
}

/** Starts the first round at once and refreshes until the returned function is called. */
export function startDiscovery(config: DiscoveryConfig, host: DiscoveryHost, timers: Timers, listener: DiscoveryListener): () => void {
  return 'dns' in config ? startDns(config.dns, host, timers, listener) : startFile(config.file, host, timers, listener)
}

type DnsConfig = Extract<DiscoveryConfig, { dns: unknown }>['dns']
type FileConfig = Extract<DiscoveryConfig, { file: unknown }>['file']

const IP_ADDRESS = /^(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f:.]*:[0-9a-f:.]*)$/i

/** Every A and AAAA record becomes an endpoint, re-resolved every refresh. */
function startDns({ host, port, scheme, refreshMs }: DnsConfig, dns: DiscoveryHost, timers: Timers, listener: DiscoveryListener): () => void {
  let stopped = false
  let timer: unknown
  const round = async () => {
    try {
      // A literal address needs no lookup, and Deno's resolver would not take one.
      const addresses = IP_ADDRESS.test(host) ? [host] : await dns.resolveDns(host)
      if (stopped) return
      // Link-local addresses with a zone ("fe80::1%eth0") cannot be written in a URL.
      const urls = [...new Set(addresses.filter((a) => !a.includes('%')).map((a) => addressUrl(scheme, a, port)))].sort()
      if (urls.length === 0) listener.failed(`${host} has no usable addresses`)
      else listener.updated(urls.map((url) => ({ url, weight: 1 })))
    } catch (error) {
      if (!stopped) listener.failed(`cannot resolve ${host}: ${reason(error)}`)
    }
    if (!stopped) timer = timers.setTimeout(() => void round(), refreshMs)
  }
  void round()
  return () => {
    stopped = true
    timers.clearTimeout(timer)
  }
}

/**
 * Read at start, again whenever the watcher fires, and every refresh as a backstop: a directory
 * watcher misses a Kubernetes ConfigMap's `..data` symlink swap and cannot start on a directory
 * that does not exist yet (runtime.md §3.4). Unchanged text is skipped, so the re-read is cheap.
 */
function startFile({ path, refreshMs }: FileConfig, files: DiscoveryHost, timers: Timers, listener: DiscoveryListener): () => void {
  let stopped = false
  let timer: unknown
  let lastText: string | undefined
  let latestRead = 0
  const read = async () => {
    const thisRead = ++latestRead
    let text: string
    try {
      text = await files.readTextFile(path)
    } catch (error) {
      if (stopped || thisRead !== latestRead) return
      lastText = undefined
      return listener.failed(`cannot read ${path}: ${reason(error)}`)
    }
    // A slower, older read must not undo a newer one.
    if (stopped || thisRead !== latestRead || text === lastText) return
    lastText = text
    const parsed = parseEndpointFile(text)
    if (parsed.problem !== undefined) listener.failed(`${path}: ${parsed.problem}`)
    else listener.updated(parsed.value)
  }
  let stopWatching = () => {}
  try {
    stopWatching = files.watchFile(path, () => void read())
  } catch (error) {
    listener.failed(`cannot watch ${path} (re-reading every ${refreshMs}ms instead): ${reason(error)}`)
  }
  const poll = () => {
    timer = timers.setTimeout(() => {
      void read()
      poll()
    }, refreshMs)
  }
  void read()
  poll()
  return () => {
    stopped = true
    stopWatching()
    timers.clearTimeout(timer)
  }
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
