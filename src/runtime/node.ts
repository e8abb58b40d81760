import { serve } from '@hono/node-server'
import { watch } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { basename, dirname } from 'node:path'
import { nodeUpstream } from './node-upstream.ts'
import type { Runtime, Server } from './types.ts'
import { debounce } from './watch.ts'

export function createNodeRuntime(): Runtime {
  return {
    name: 'node',
    version: process.versions.node,
    upstream: nodeUpstream,
    serve(handler, options) {
      return new Promise<Server>((resolve, reject) => {
        const server = serve(
          {
            fetch: (request, env) => handler(request, { remoteAddress: env.incoming.socket.remoteAddress ?? '' }),
            hostname: options.host,
            port: options.port,
            serverOptions: { requestTimeout: 0, keepAliveTimeout: 5_000 },
          },
          (info: AddressInfo) =>
            resolve({
              host: options.host,
              port: info.port,
              close: () =>
                new Promise<void>((done) => {
                  server.close(() => done())
                  if ('closeIdleConnections' in server) server.closeIdleConnections()
                }),
            }),
        )
        server.once('error', reject)
      })
    },
    readTextFile: (path) => readFile(path, 'utf8'),
    watchFile(path, onChange) {
      // Watch the directory: a file watcher goes deaf after an atomic replace (runtime.md §3.4).
      const name = basename(path)
      const fire = debounce(onChange, 150)
      const watcher = watch(dirname(path), (_event, file) => {
        if (file === null || file === name) fire()
      })
      return () => watcher.close()
    },
    onSignal: (signal, listener) => void process.on(signal, listener),
    env: (name) => process.env[name],
    args: process.argv.slice(2),
    writeOut: (line) => void process.stdout.write(`${line}\n`),
    writeErr: (line) => void process.stderr.write(`${line}\n`),
    exit: (code) => process.exit(code),
  }
}
