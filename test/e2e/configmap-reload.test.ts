// Hot reload from a mounted Kubernetes ConfigMap. The kubelet lays a ConfigMap volume out as
//   pillion.toml -> ..data/pillion.toml
//   ..data -> ..2026_12_03_10_00_00.000000001
//   ..2026_12_03_10_00_00.000000001/pillion.toml
// and updates it (pkg/volume/util/atomic_writer.go) by writing a new timestamped directory, pointing
// a new `..data_tmp` symlink at it, renaming `..data_tmp` over `..data`, and removing the old
// directory. The file Pillion was given, `pillion.toml`, is never written, renamed or removed: only
// what it resolves to changes. This test does exactly that and waits for the new policy to answer.
import assert from 'node:assert/strict'
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request, startGateway, startUpstream, targets, tempDir, type Gateway, type Upstream, until } from './harness.ts'

function policy(upstream: string): string {
  return `
[gateway]
service = "configmap"
admin = "127.0.0.1:0"

[listeners.ingress]
listen = "127.0.0.1:0"
direction = "ingress"

[upstreams.app]
endpoints = ["${upstream}"]

[[routes]]
name = "all"
listener = "ingress"
path = "/*"
upstream = "app"
`
}

/** A ConfigMap volume as the kubelet writes it, one generation at a time. */
class ConfigMapVolume {
  readonly dir = tempDir()
  #generation = 0
  #current: string | undefined

  get file(): string {
    return join(this.dir, 'pillion.toml')
  }

  /** First projection, or an update: new timestamped dir, `..data_tmp`, rename over `..data`, old dir removed. */
  write(text: string): void {
    const generation = `..2026_12_03_10_00_00.${String(++this.#generation).padStart(9, '0')}`
    mkdirSync(join(this.dir, generation))
    writeFileSync(join(this.dir, generation, 'pillion.toml'), text)
    symlinkSync(generation, join(this.dir, '..data_tmp'))
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'))
    if (this.#current === undefined) symlinkSync(join('..data', 'pillion.toml'), this.file)
    else rmSync(join(this.dir, this.#current), { recursive: true })
    this.#current = generation
  }
}

for (const target of targets()) {
  describe(`ConfigMap reload on ${target.name}`, { skip: target.missing }, () => {
    let one: Upstream
    let two: Upstream
    let gateway: Gateway
    let volume: ConfigMapVolume

    before(async () => {
      one = await startUpstream((_req, res) => res.end('one'))
      two = await startUpstream((_req, res) => res.end('two'))
      volume = new ConfigMapVolume()
      volume.write(policy(one.url))
      gateway = await startGateway(target, '', {}, volume.file)
    })

    after(async () => {
      await gateway?.stop()
      await one?.close()
      await two?.close()
      if (volume) rmSync(volume.dir, { recursive: true, force: true })
    })

    const answer = async () => (await request(`${gateway.listeners.ingress}/`)).body.toString()
    const answers = (expected: string) => async () => ((await answer()) === expected ? true : undefined)

    it('serves the policy the ConfigMap had at start', async () => {
      assert.equal(await answer(), 'one')
    })

    it("applies the kubelet's ..data swap, and the next one", async () => {
      volume.write(policy(two.url))
      await until('the swapped-in policy (upstream two)', answers('two'))
      volume.write(policy(one.url))
      await until('the policy swapped in again (upstream one)', answers('one'))
      const status = (await request(`${gateway.admin}/config/status`)).json<{ reloads: { succeeded: number } }>()
      assert.equal(status.reloads.succeeded, 2)
    })
  })
}
