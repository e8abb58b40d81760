/**
 * A relative path in the policy file means relative to that file, as nginx's include and Envoy's
 * path-based configs do, not to wherever the gateway was started. The result is relative to the
 * same place `source` is (absolute if it is); the file itself is read only when the upstream starts,
 * so `pillion check` passes before it exists.
 */
export function besidePolicyFile(path: string, source: string): string {
  if (path.startsWith('/') || /^[a-z]:[\\/]/i.test(path) || path.startsWith('\\\\')) return path
  const slash = Math.max(source.lastIndexOf('/'), source.lastIndexOf('\\'))
  return slash === -1 ? path : `${source.slice(0, slash + 1)}${path}`
}
