/** One save fires several watch events on every runtime; act once they settle. */
export function debounce(fn: () => void, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined
  return () => {
    clearTimeout(timer)
    timer = setTimeout(fn, ms)
  }
}

/**
 * Tells, at each event in the watched file's directory, whether the file the path resolves to has
 * changed since the last event. A Kubernetes ConfigMap volume updates `pillion.toml ->
 * ..data/pillion.toml` by renaming a new `..data` symlink into place: the events name `..data`,
 * never the file, and only what the path resolves to shows the change. A regular file resolves to
 * itself, so this adds nothing there. `realPath` throws while the file is missing (counted as a change).
 */
export function resolvedTargetChange(path: string, realPath: (path: string) => string): () => boolean {
  const resolve = () => {
    try {
      return realPath(path)
    } catch {
      return undefined
    }
  }
  let target = resolve()
  return () => {
    const now = resolve()
    if (now === target) return false
    target = now
    return true
  }
}
