import { describe, expect, it } from 'vitest'
import { clientChain, clientIp } from '../../src/routing/client.js'
import { IpSet } from '../../src/shared/ip.js'

describe('client IP', () => {
  const trusted = new IpSet(['10.0.0.0/8', '192.168.1.1', 'fd00::/8'])
  it.each([
    ['untrusted peer: its own address, whatever it claims', '203.0.113.9', '1.2.3.4', '203.0.113.9'],
    ['trusted peer: the first untrusted from the right', '10.0.0.1', '1.2.3.4, 198.51.100.7', '198.51.100.7'],
    ['trusted chain of proxies is skipped', '10.0.0.1', '1.2.3.4, 10.1.1.1, 192.168.1.1', '1.2.3.4'],
    ['v4-mapped peer address is normalised', '::ffff:10.0.0.1', '5.6.7.8', '5.6.7.8'],
    ['garbage entry stops the walk at the last trusted hop', '10.0.0.1', 'nonsense, 10.0.0.2', '10.0.0.2'],
    ['IPv6 trusted range', 'fd00::1', '2001:db8::5', '2001:db8::5'],
    ['no header', '10.0.0.1', undefined, '10.0.0.1']
  ])('%s', (_n, peer, xff, expected) => {
    expect(clientIp(peer, xff, trusted)).toBe(expected)
  })
  it('with no trusted proxies configured, X-Forwarded-For is ignored', () => {
    expect(clientIp('10.0.0.1', '1.2.3.4', new IpSet([]))).toBe('10.0.0.1')
  })
})

describe('the X-Forwarded-For chain sent upstream (NGINX realip semantics)', () => {
  const trusted = new IpSet(['10.0.0.0/8', '192.168.1.1'])
  it.each([
    ['untrusted peer: the peer alone, whatever it claims', '203.0.113.9', '6.6.6.6, 1.2.3.4', ['203.0.113.9']],
    ['trusted peer: from the resolved client onward, forged entries left of it dropped', '10.0.0.1', '6.6.6.6, 203.0.113.9', ['203.0.113.9', '10.0.0.1']],
    ['several trusted hops are kept in order', '10.0.0.1', '6.6.6.6, 203.0.113.9, 192.168.1.1, 10.9.9.9', ['203.0.113.9', '192.168.1.1', '10.9.9.9', '10.0.0.1']],
    ['garbage ends the chain at the last trusted hop', '10.0.0.1', 'nonsense, 10.0.0.2', ['10.0.0.2', '10.0.0.1']],
    ['trusted peer without the header', '::ffff:10.0.0.1', undefined, ['10.0.0.1']]
  ])('%s', (_n, peer, xff, expected) => {
    expect(clientChain(peer, xff, trusted)).toEqual(expected)
    expect(clientIp(peer, xff, trusted)).toBe(expected[0])
  })
})
