import { open } from 'node:fs/promises'
import type { AppendSink } from '../core/host.ts'

/**
 * Node and Bun: "stdout" through process.stdout (asynchronous on pipes, so a slow reader holds up
 * the write's promise, not the event loop), anything else a file opened for appending.
 */
export async function openAppendSink(to: string): Promise<AppendSink> {
  if (to === 'stdout') {
    return {
      write: (bytes) => new Promise<void>((resolve, reject) => void process.stdout.write(bytes, (error) => (error ? reject(error) : resolve()))),
      close: async () => {},
    }
  }
  const handle = await open(to, 'a')
  return {
    async write(bytes) {
      for (let offset = 0; offset < bytes.length; ) offset += (await handle.write(bytes, offset)).bytesWritten
    },
    close: () => handle.close(),
  }
}
