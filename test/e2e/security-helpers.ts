import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { tempDir } from './harness.ts'

export interface RawReply {
  /** Status of the first response on the connection; 0 when the server closed it without one. */
  status: number
  /** The whole byte stream the server sent back, as latin1 text. */
  text: string
}

/**
 * Sends bytes exactly as given on a fresh TCP connection and reads until the server closes it or a
 * full response has arrived (the request asks for Connection: close, so the server ends it).
 * Clients normalize paths and refuse malformed headers; a raw socket does not.
 */
export function rawRequest(base: string, bytes: string): Promise<RawReply> {
  const url = new URL(base)
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname)
    let text = ''
    let done = false
    const finish = () => {
      if (done) return
      done = true
      socket.destroy()
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)
      resolve({ status: status ? Number(status[1]) : 0, text })
    }
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      text += chunk
      if (responseComplete(text)) finish()
    })
    socket.on('end', finish)
    socket.on('close', finish)
    socket.on('error', finish)
    socket.write(bytes, 'latin1')
  })
}

/** A complete first response: headers ended and Content-Length bytes (or a last chunk) received. */
function responseComplete(text: string): boolean {
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return false
  const head = text.slice(0, end)
  const length = /\r\ncontent-length: *(\d+)/i.exec(head)
  if (length) return text.length - end - 4 >= Number(length[1])
  if (/\r\ntransfer-encoding: *chunked/i.test(head)) return text.includes('\r\n0\r\n\r\n', end)
  return /^HTTP\/1\.[01] (?:1\d\d|204|304)/.test(head)
}

/** A request line and headers, CRLF-joined, ending the head; `Connection: close` unless given. */
export function rawHead(requestLine: string, headers: string[] = ['Host: localhost']): string {
  const all = headers.some((h) => /^connection:/i.test(h)) ? headers : [...headers, 'Connection: close']
  return `${requestLine}\r\n${all.join('\r\n')}\r\n\r\n`
}

export interface TestCertificates {
  dir: string
  caCert: string
  serverCert: string
  serverKey: string
  clientCert: string
  clientKey: string
}

/**
 * A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with
 * openssl at test time. EC P-256 keys, so it is quick.
 */
export function makeCertificates(): TestCertificates {
  const dir = tempDir()
  const file = (name: string) => join(dir, name)
  generateKey(file('ca.key'))
  openssl('req', '-x509', '-new', '-key', file('ca.key'), '-subj', '/CN=pillion test CA', '-days', '2', '-out', file('ca.pem'))
  const certs = { dir, caCert: file('ca.pem') }
  // The server's SANs include a name no DNS knows, for upstream server_name tests.
  issueCertificate(certs, 'server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:ingress.internal\nextendedKeyUsage=serverAuth\n')
  issueCertificate(certs, 'client', '/CN=pillion test client', 'extendedKeyUsage=clientAuth\n')
  return {
    dir,
    caCert: file('ca.pem'),
    serverCert: file('server.pem'),
    serverKey: file('server.key'),
    clientCert: file('client.pem'),
    clientKey: file('client.key'),
  }
}

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

function generateKey(path: string): void {
  openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path)
}

/**
 * Signs one more certificate with the test CA (its key is ca.key beside caCert): `NAME.pem` and
 * `NAME.key` in the same folder. `extensions` is an openssl extfile, such as
 * "subjectAltName=URI:spiffe://cluster.local/ns/shop/sa/checkout\nextendedKeyUsage=clientAuth\n".
 */
export function issueCertificate(certs: { dir: string; caCert: string }, name: string, subject: string, extensions: string): { cert: string; key: string } {
  const file = (suffix: string) => join(certs.dir, `${name}.${suffix}`)
  generateKey(file('key'))
  openssl('req', '-new', '-key', file('key'), '-subj', subject, '-out', file('csr'))
  writeFileSync(file('ext'), extensions)
  openssl(
    'x509', '-req', '-in', file('csr'), '-CA', certs.caCert, '-CAkey', join(certs.dir, 'ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', file('ext'), '-out', file('pem'),
  )
  return { cert: file('pem'), key: file('key') }
}
