/**
 * A Node built-in module, loaded the first time it is used. The compiled binary is one bundle, and
 * Bun's bundler hoists every static `import … from 'node:…'` to its top, so each built-in imported
 * anywhere is loaded at start whether the policy needs it or not: node:http2, node:http, node:net,
 * node:tls and node:crypto cost the binary several MB of RSS that way (docs/performance.md, "Binary
 * RSS"). `process.getBuiltinModule` is left alone by the bundler and loads the module only when called.
 */
export function lazyBuiltin<T>(load: () => T): () => T {
  let loaded: T | undefined
  return () => (loaded ??= load())
}
