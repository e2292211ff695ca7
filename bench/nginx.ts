/**
 * NGINX doing flaggate's job, for the comparison rows: `limit_req` (two zones, per key and per
 * key + IP, as flaggate's two limits) and `proxy_cache` on the environment document, plain
 * proxying elsewhere; one worker, access log on (buffered), config generated into a temp dir.
 * Installed with apt when missing; when that is not possible the bench says so and skips the rows.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../test/support/redis-server.js'
import type { Children } from './support.js'

export interface NginxAvailability { bin: string | undefined; note: string }

function which (bin: string): string | undefined {
  for (const dir of ['/usr/sbin', '/usr/local/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/nginx/sbin']) {
    if (spawnSync(join(dir, bin), ['-v'], { stdio: 'ignore' }).status === 0) return join(dir, bin)
  }
  return undefined
}

/** Finds nginx, or installs it with apt-get (root only). Never throws: the note says what happened. */
export function ensureNginx (): NginxAvailability {
  const found = which('nginx')
  if (found !== undefined) return { bin: found, note: `${found} (already installed)` }
  if (process.getuid?.() !== 0) return { bin: undefined, note: 'nginx is not installed and this is not root, so apt-get cannot install it: NGINX rows skipped' }
  if (spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status !== 0) return { bin: undefined, note: 'nginx is not installed and there is no apt-get: NGINX rows skipped' }
  console.log('nginx is missing: installing it with apt-get (a minute) …')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  spawnSync('apt-get', ['update'], { stdio: 'ignore', env })
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'nginx-light'], { stdio: 'ignore', env })
  const r2 = r.status === 0 ? r : spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'nginx'], { stdio: 'ignore', env })
  const bin = which('nginx')
  if (r2.status !== 0 || bin === undefined) return { bin: undefined, note: 'nginx could not be installed with apt-get: NGINX rows skipped' }
  return { bin, note: `${bin} (installed by this run with apt-get)` }
}

export function nginxVersion (bin: string): string {
  return spawnSync(bin, ['-v'], { encoding: 'utf8' }).stderr.trim().replace(/^nginx version: /, '')
}

export interface NginxOptions {
  /** upstream of the environment document (cached) */
  docUpstream: string
  /** upstream of everything else (proxied, limited) */
  fastUpstream: string
}

function hostPort (url: string): string { return new URL(url).host }

/** Starts one NGINX (master + one worker) and resolves with its URL and the master's pid. */
export async function startNginx (children: Children, bin: string, o: NginxOptions): Promise<{ url: string; pid: number; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'flaggate-bench-nginx-'))
  for (const d of ['cache', 'tmp']) mkdirSync(join(dir, d))
  const port = await freePort()
  const limits = `limit_req zone=fleet burst=1000000 nodelay;
      limit_req zone=instance burst=1000000 nodelay;`
  const proxy = `proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;`
  const user = process.getuid?.() === 0 ? 'user root;' : ''
  writeFileSync(join(dir, 'nginx.conf'), `${user}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log ${dir}/access.log combined buffer=64k flush=1s;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  keepalive_requests 1000000;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=docs:10m max_size=256m inactive=10m use_temp_path=off;
  limit_req_zone $http_x_environment_key zone=fleet:32m rate=1000000r/s;
  limit_req_zone $http_x_environment_key$binary_remote_addr zone=instance:32m rate=1000000r/s;
  upstream doc { server ${hostPort(o.docUpstream)}; keepalive 128; }
  upstream fast { server ${hostPort(o.fastUpstream)}; keepalive 128; }
  server {
    listen 127.0.0.1:${port};
    location = /api/v1/environment-document/ {
      ${limits}
      ${proxy}
      proxy_pass http://doc;
      proxy_cache docs;
      proxy_cache_key "$http_x_environment_key$request_uri";
      proxy_cache_valid 200 30s;
      proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
      proxy_cache_lock on;
      proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
      proxy_cache_background_update on;
      add_header X-Cache-Status $upstream_cache_status;
    }
    location / {
      ${limits}
      ${proxy}
      proxy_pass http://fast;
    }
  }
}
`)
  const url = `http://127.0.0.1:${port}`
  const pid = await children.spawnCommand(bin, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off; master_process on;'], async () => {
    try { await (await fetch(`${url}/nonexistent-health-probe`)).arrayBuffer(); return true } catch { return false }
  })
  return { url, pid, dir }
}
