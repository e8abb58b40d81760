import { lookup } from 'node:dns/promises'
import { readFileSync, realpathSync, watch } from 'node:fs'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { openAppendSink } from './append-sink.ts'
import type { Runtime } from '../core/host.ts'
import { debounce, resolvedTargetChange } from './watch.ts'
import { spawnChild } from './spawn-process.ts'

/** The parts of a runtime that Node and Bun share through Node's process and fs APIs. */
export type ProcessHost = Pick<
  Runtime,
  'readTextFile' | 'readTextFileSync' | 'writeTextFile' | 'watchFile' | 'resolveDns' | 'onSignal' | 'memory' | 'env' | 'args' | 'writeOut' | 'writeErr' | 'openAppendSink' | 'exit' | 'spawn'
>

export function processHost(): ProcessHost {
  return {
    readTextFile: (path) => readFile(path, 'utf8'),
    readTextFileSync: (path) => readFileSync(path, 'utf8'),
    async writeTextFile(path, text, options) {
      if (options?.createOnly === true) return writeFile(path, text, { flag: 'wx' })
      const temporary = `${path}.${process.pid}.tmp`
      await writeFile(temporary, text)
      await rename(temporary, path)
    },
    watchFile(path, onChange) {
      // Watch the directory: a file watcher goes deaf after an atomic replace (runtime.md §3.4).
      const name = basename(path)
      const fire = debounce(onChange, 150)
      // A ConfigMap's `..data` swap names no file of ours: see what the path resolves to now.
      const moved = resolvedTargetChange(path, realpathSync)
      const watcher = watch(dirname(path), (event, file) => {
        // Only a rename, creation or removal can move the path; an access log written beside it cannot, so it costs no realpath.
        const moves = event === 'rename' && moved()
        if (moves || file === null || file === name) fire()
      })
      // An unhandled 'error' (the directory removed) would crash the process; the caller's re-read notices instead.
      watcher.on('error', () => {})
      return () => watcher.close()
    },
    // getaddrinfo, as the upstream client itself connects: /etc/hosts and search domains apply.
    resolveDns: async (host) => (await lookup(host, { all: true })).map((entry) => entry.address),
    onSignal: (signal, listener) => void process.on(signal, listener),
    memory() {
      const usage = process.memoryUsage()
      return { residentBytes: usage.rss, heapUsedBytes: usage.heapUsed, heapTotalBytes: usage.heapTotal }
    },
    env: (name) => process.env[name],
    args: process.argv.slice(2),
    writeOut: (line) => void process.stdout.write(`${line}\n`),
    writeErr: (line) => void process.stderr.write(`${line}\n`),
    openAppendSink,
    exit: (code) => process.exit(code),
    spawn: spawnChild,
  }
}
