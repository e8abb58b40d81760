import { systemTimers, type Timers } from '../core/timers.ts'

/** Two reads this far apart must agree before a policy text counts. */
const SETTLE_MS = 10
/** How many reads a file that keeps changing gets before this reload gives up on it. */
const MOST_READS = 20

/**
 * Reads a policy file that may be being written in place (an editor's save, `cat > pillion.toml`,
 * a script's writeFile). A read that lands mid-write sees a torn text: the new head over the old
 * tail, or a cut after a whole line. TOML is line-based, so a torn text can still be a valid policy,
 * and a wrong one (seen: `max_body = "51b"` read while "4kb" became "512b"). So a text counts only
 * once two reads SETTLE_MS apart agree. A file that never settles fails this reload; the watch
 * fires again once the writer is done.
 */
export async function readSettled(read: () => Promise<string>, timers: Pick<Timers, 'setTimeout'> = systemTimers): Promise<string> {
  let text = await read()
  for (let reads = 1; reads < MOST_READS; reads++) {
    await new Promise<void>((resolve) => timers.setTimeout(resolve, SETTLE_MS))
    const again = await read()
    if (again === text) return text
    text = again
  }
  // The caller names the file ("cannot read pillion.toml: …").
  throw new Error(`it kept changing while it was read (${MOST_READS} reads ${SETTLE_MS} ms apart); it is read again at its next change`)
}
