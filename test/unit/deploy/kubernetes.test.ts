// Every manifest under deploy/kubernetes/ is checked against the Kubernetes API schemas, and the
// ConfigMap's policy against Pillion's own loader.
//
// The validator: kubernetes-models (core and apps kinds) and @kubernetes-models/prometheus-operator
// (the PodMonitor/ServiceMonitor CRDs) ship one validate function per kind and apiVersion, compiled
// by ajv (standalone code) from the Kubernetes OpenAPI schemas and from the operator's CRD schemas.
// They check types, enums, formats and required fields, as the API server's schema does. Like the
// API server's default (non-strict) field validation, they do not refuse an unknown field: the
// negative cases below are wrong types, a wrong enum value and a missing required field.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { parseAllDocuments } from 'yaml'
import { loadConfigText } from '../../../src/config/load.ts'

const DIR = resolve(import.meta.dirname, '../../../deploy/kubernetes')
const files = readdirSync(DIR).filter((name) => name.endsWith('.yaml'))

/** Where the model classes (each with its compiled schema) of an apiVersion live. */
const MODULES: Record<string, string> = {
  v1: 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
}

type Manifest = { apiVersion?: unknown; kind?: unknown; [key: string]: unknown }

function parse(text: string, source: string): Manifest[] {
  return parseAllDocuments(text).map((document, index) => {
    if (document.errors.length > 0) throw new Error(`${source} document ${index}: ${document.errors.map((e) => e.message).join('; ')}`)
    return document.toJS() as Manifest
  })
}

/** Throws with every schema error if the manifest does not match its kind's schema. */
async function validate(manifest: Manifest): Promise<void> {
  const { apiVersion, kind } = manifest
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') throw new Error('apiVersion and kind must be strings')
  const module = MODULES[apiVersion]
  if (module === undefined) throw new Error(`no schema here for apiVersion ${apiVersion}`)
  const models = (await import(module)) as Record<string, new (data: unknown) => { validate(): void }>
  const Model = models[kind]
  if (Model === undefined) throw new Error(`no schema for ${kind} in ${apiVersion}`)
  new Model(manifest).validate()
}

const manifests = files.flatMap((name) => parse(readFileSync(join(DIR, name), 'utf8'), name).map((manifest) => ({ name, manifest })))
const byKind = (kind: string) => manifests.filter(({ manifest }) => manifest.kind === kind).map(({ manifest }) => manifest)

describe('deploy/kubernetes manifests', () => {
  it('has the manifests the docs describe', () => {
    for (const name of ['configmap.yaml', 'deployment-native-sidecar.yaml', 'deployment-two-containers.yaml', 'service.yaml', 'podmonitor.yaml']) {
      assert.ok(files.includes(name), `${name} is missing`)
    }
  })

  for (const { name, manifest } of manifests) {
    it(`${name}: ${String(manifest.kind)} matches the ${String(manifest.apiVersion)} schema`, async () => {
      await validate(manifest)
    })
  }

  it("the ConfigMap's policy loads with Pillion's loader, probes on the pod IP and admin on loopback", () => {
    const [configMap] = byKind('ConfigMap') as Array<{ data: Record<string, string> }>
    const config = loadConfigText(configMap!.data['pillion.toml']!, 'configmap.yaml:pillion.toml')
    assert.deepEqual(config.gateway.probes, { host: '0.0.0.0', port: 9902 })
    assert.deepEqual(config.gateway.admin, { host: '127.0.0.1', port: 9901 })
    assert.equal(config.gateway.shutdownGraceMs, 20_000)
  })

  it('both Deployments: probes on the probes listener, grace above preStop + shutdown_grace, egress env', () => {
    const [configMap] = byKind('ConfigMap') as Array<{ data: Record<string, string> }>
    const grace = /shutdown_grace = "(\d+)s"/.exec(configMap!.data['pillion.toml']!)
    assert.ok(grace, 'the policy names shutdown_grace in seconds')
    const deployments = byKind('Deployment') as any[]
    assert.equal(deployments.length, 2)
    let native = 0
    for (const deployment of deployments) {
      const pod = deployment.spec.template.spec
      const all = [...(pod.initContainers ?? []), ...pod.containers]
      const pillion = all.find((c: any) => c.name === 'pillion')
      if ((pod.initContainers ?? []).includes(pillion) && pillion.restartPolicy === 'Always') native++
      assert.deepEqual(pillion.readinessProbe.httpGet, { path: '/readyz', port: 9902 })
      assert.deepEqual(pillion.startupProbe.httpGet, { path: '/readyz', port: 9902 })
      assert.deepEqual(pillion.livenessProbe.httpGet, { path: '/healthz', port: 9902 })
      const preStop = pillion.lifecycle.preStop.sleep.seconds as number
      assert.ok(pod.terminationGracePeriodSeconds > preStop + Number(grace[1]), 'terminationGracePeriodSeconds > preStop + shutdown_grace')
      assert.ok(pillion.resources.requests.memory && pillion.resources.limits.memory && pillion.resources.requests.cpu)
      assert.ok(pillion.volumeMounts.some((m: any) => m.mountPath === '/etc/pillion' && m.subPath === undefined), 'the policy is mounted as a directory')
      const app = pod.containers.find((c: any) => c.name !== 'pillion')
      const env = Object.fromEntries(app.env.map((e: any) => [e.name, e.value]))
      assert.equal(env.HTTP_PROXY, 'http://127.0.0.1:15001')
      assert.equal(env.NO_PROXY, 'localhost,127.0.0.1')
    }
    assert.equal(native, 1, 'one Deployment runs Pillion as a native sidecar')
  })

  it('the PodMonitor scrapes /metrics on the probes port', () => {
    const [monitor] = byKind('PodMonitor') as any[]
    assert.deepEqual(
      monitor.spec.podMetricsEndpoints.map((e: any) => [e.port, e.path]),
      [['probes', '/metrics']],
    )
  })
})

describe('the validator refuses a broken manifest', () => {
  const deployment = readFileSync(join(DIR, 'deployment-native-sidecar.yaml'), 'utf8')
  const broken: Array<[string, string, string, RegExp]> = [
    ['a string where an integer belongs', 'containerPort: 9902', 'containerPort: "9902"', /containerPort must be integer/],
    ['a string where an integer belongs (replicas)', 'replicas: 2', 'replicas: two', /replicas must be integer/],
    ['a value outside an enum', 'type: RuntimeDefault', 'type: RuntimeDefualt', /seccompProfile\/type must be equal to one of the allowed values/],
    ['a string where a list belongs', 'drop: ["ALL"]', 'drop: ALL', /capabilities\/drop must be array/],
  ]
  for (const [what, from, to, error] of broken) {
    it(what, async () => {
      assert.ok(deployment.includes(from), `the fixture still has ${from}`)
      const [manifest] = parse(deployment.replace(from, to), 'broken.yaml')
      await assert.rejects(validate(manifest!), error)
    })
  }

  it('a missing required field (a container without a name)', async () => {
    const [manifest] = parse(deployment.replace('- name: app ', '- '), 'broken.yaml')
    await assert.rejects(validate(manifest!), /containers\/0 must have required property name/)
  })

  it('a PodMonitor with a wrong type', async () => {
    const text = readFileSync(join(DIR, 'podmonitor.yaml'), 'utf8')
    assert.ok(text.includes('matchLabels:'))
    const [manifest] = parse(text.replace(/matchLabels:\n.*\n/, 'matchLabels: my-service\n'), 'broken.yaml')
    await assert.rejects(validate(manifest!), /matchLabels must be object/)
  })

  it('an unknown kind', async () => {
    await assert.rejects(validate({ apiVersion: 'apps/v1', kind: 'Deploymnet' }), /no schema for Deploymnet/)
  })
})
