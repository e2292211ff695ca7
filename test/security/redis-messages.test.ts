/**
 * Attack 16: one Redis message killed every replica: `PUBLISH <prefix>purge null` (and
 * `…blocks null`) → TypeError → exit 1. Anyone who can write to Redis can publish. Two replicas
 * (separate processes) receive every malformed message below; both keep serving, and a
 * well-formed block published after them is still applied.
 */
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js'
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js'
import { policyYaml, spawnGateway, type SpawnedGateway } from '../support/gateway.js'
import { raw } from '../support/http.js'

const PREFIX = 'sec16:'
const TOKEN = 'security-test-token-0123456789'
let redis: PrivateRedis
let pub: Redis
let up: RecordingUpstream
const replicas: SpawnedGateway[] = []

const JUNK = ['null', 'true', '42', '"x"', '[]', '{}', '{"v":2}', '{"v":2,"from":"x","target":null}', '{"v":2,"from":"x","target":{"envId":"1"}}',
  '{"v":1,"from":"x","version":1,"op":"add","block":null}', '{"v":1,"from":"x","version":"9","op":"remove","id":{}}',
  '{"v":1,"from":"x","version":1,"op":"add","block":{"id":{},"ip":[]}}', '{"__proto__":{"v":1}}', 'not json', '\u0000\uffff', '{"v":1,"from":"x","version":1e400,"op":"remove","id":"a"}']

beforeAll(async () => {
  redis = await startPrivateRedis()
  pub = new Redis(redis.url)
  up = await startRecordingUpstream()
  const yaml = policyYaml({ coreUrl: up.url, adminToken: TOKEN, redis: { url: redis.url, keyPrefix: PREFIX, commandTimeout: '500ms' } })
  replicas.push(await spawnGateway(yaml), await spawnGateway(yaml))
}, 60_000)
afterAll(async () => {
  for (const r of replicas) await r.stop()
  pub?.disconnect()
  await up?.close()
  await redis?.stop()
})

describe('attack 16: malformed messages on the replicas\' channels', () => {
  it('every replica survives them, logs them, and still applies a good message', async () => {
    const channels = (await pub.pubsub('CHANNELS', `${PREFIX}*`)) as string[]
    expect(channels.length).toBeGreaterThan(0)
    for (const ch of channels) for (const m of JUNK) await pub.publish(ch, m)
    // a well-formed block from "another replica", after the junk: proves the subscription still works
    const block = { id: 'r-sec16', keyDigest: undefined, ip: '198.51.100.16', reason: 'test', source: 'runtime', createdAt: Date.now(), actor: 'test' }
    await pub.hset(`${PREFIX}blocks`, 'r-sec16', JSON.stringify(block))
    const blocksChannel = channels.find((c) => c.endsWith('blocks')) ?? channels[0]!
    await pub.publish(blocksChannel, JSON.stringify({ v: 1, from: 'other', version: 1, op: 'add', block }))
    for (const r of replicas) {
      const deadline = Date.now() + 10_000
      let list = ''
      while (Date.now() < deadline && r.process.exitCode === null) {
        list = (await raw(r.adminUrl, '/admin/blocks', { headers: { authorization: `Bearer ${TOKEN}` } })).body.toString()
        if (list.includes('r-sec16')) break
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      expect(r.process.exitCode, r.stderr.join('')).toBeNull()
      expect((await raw(r.url, '/api/v1/flags/')).status).toBe(200)
      expect(list).toContain('r-sec16')
      // the log line comes through the child's stdout pipe: wait for it
      const logDeadline = Date.now() + 5000
      while (Date.now() < logDeadline && !r.logs.some((l) => l.msg === 'ignored a malformed message from Redis')) await new Promise((resolve) => setTimeout(resolve, 50))
      expect(r.logs.map((l) => l.msg)).toContain('ignored a malformed message from Redis')
    }
  })
})
