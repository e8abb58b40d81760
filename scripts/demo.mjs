#!/usr/bin/env node
// `npm start`: a tiny "orders" service and two "payments" replicas on loopback, with Pillion in front
// of them on policies/demo.toml. Ctrl-C stops everything.
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

function service(port, name, handler) {
  return new Promise((resolve, reject) => {
    const server = createServer(handler)
    server.once('error', (error) => reject(new Error(`demo ${name} cannot listen on 127.0.0.1:${port}: ${error.message}`)))
    server.listen(port, '127.0.0.1', () => resolve(server))
  })
}

const json = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

const servers = await Promise.all([
  service(3000, 'orders', (req, res) => {
    if (req.url.startsWith('/api/orders')) return json(res, 200, { orders: [{ id: 1, total: 42 }], via: req.headers.via })
    if (req.url.startsWith('/api/slow')) return setTimeout(() => json(res, 200, { slow: true }), 8000)
    json(res, 200, { service: 'orders', path: req.url, request_id: req.headers['x-request-id'] })
  }),
  service(3101, 'payments-1', (req, res) => json(res, 200, { replica: 1, path: req.url })),
  service(3102, 'payments-2', (req, res) => json(res, 200, { replica: 2, path: req.url })),
]).catch((error) => {
  console.error(error.message)
  process.exit(1)
})

const gateway = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/main.ts'), 'run', '-c', join(root, 'policies/demo.toml')], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
})
gateway.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  if (!chunk.toString().includes(' ready in ')) return
  console.log(`
Try:
  curl -i http://127.0.0.1:8080/api/orders                              # ingress -> orders
  curl -i http://127.0.0.1:8080/api/slow                                # 504 upstream_timeout after 5s
  curl -i http://127.0.0.1:8080/nowhere                                 # 404 no_route, JSON
  curl -i -H 'host: payments' http://127.0.0.1:15001/payments/charge    # egress -> payments replicas
  curl -s http://127.0.0.1:9901/config                                  # the effective policy
Ctrl-C to stop.`)
})
const stop = () => gateway.kill('SIGTERM')
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
gateway.on('exit', (code) => {
  for (const server of servers) server.close()
  process.exit(code ?? 0)
})
