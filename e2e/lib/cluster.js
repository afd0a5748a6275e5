'use strict';
// Starts the test topology on free loopback ports and tears it down again:
//
//   redis-server  <-  drawbridge "a"  \
//                 <-  drawbridge "b"   >-  nginx (round robin, no stickiness)  <-  browsers
//
// Every process is a child of this one; stop() ends them all, and an exit hook kills any that
// are still alive if the test process dies half way.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..');
const ARTIFACTS = path.join(REPO, 'e2e', 'artifacts');
const TEMPLATE = path.join(REPO, 'deploy', 'nginx', 'drawbridge.conf.template');

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/** A port the kernel just handed out on 127.0.0.1 (never a fixed one). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tail(file, lines = 30) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Polls `check` until it returns truthy; fails with `what` and the log of a process that died. */
async function waitFor(what, check, { timeoutMs = 30000, proc } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  while (Date.now() < deadline) {
    if (proc && proc.child.exitCode !== null) {
      throw new Error(`${proc.name} exited (${proc.child.exitCode}) while waiting for ${what}:\n${tail(proc.log)}`);
    }
    try {
      if (await check()) return;
    } catch (err) {
      lastErr = err;
    }
    await sleep(100);
  }
  const log = proc ? `\n${proc.name} log:\n${tail(proc.log)}` : '';
  throw new Error(`timed out waiting for ${what}${lastErr ? ` (${lastErr.message})` : ''}${log}`);
}

function redisPing(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    sock.setTimeout(1000, () => { sock.destroy(); resolve(false); });
    sock.on('error', () => resolve(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      data += d;
      if (data.includes('\r\n')) {
        sock.end();
        resolve(data.startsWith('+PONG'));
      }
    });
  });
}

async function httpOk(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await res.arrayBuffer();
  return res.status === 200;
}

class Cluster {
  /** `label` prefixes log names; `env`: extra DRAWBRIDGE_* settings for both instances. */
  constructor({ label = 'e2e', env = {} } = {}) {
    this.label = label;
    /** {name, child, log} for every process we started, in start order. */
    this.procs = [];
    this.instances = [];
    this.env = env;
  }

  /** First match of `re` in the instances' logs (e.g. a verification code the dev mailer logged). */
  async findInLogs(re, timeoutMs = 10000) {
    let found = null;
    await waitFor(`${re} in the server logs`, () => {
      for (const { proc } of this.instances) {
        const m = fs.readFileSync(proc.log, 'utf8').match(re);
        if (m) {
          found = m;
          return true;
        }
      }
      return false;
    }, { timeoutMs });
    return found;
  }

  spawn(name, cmd, args, env = {}) {
    fs.mkdirSync(path.join(ARTIFACTS, 'logs'), { recursive: true });
    const log = path.join(ARTIFACTS, 'logs', `${this.label}-${name}.log`);
    const fd = fs.openSync(log, 'w');
    // The server reads every DRAWBRIDGE_* variable as configuration (and refuses unknown ones, such
    // as our own DRAWBRIDGE_BIN): the instances get exactly the ones set here, nothing inherited.
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DRAWBRIDGE_')));
    const child = spawn(cmd, args, {
      cwd: this.dir,
      env: { ...inherited, ...env },
      stdio: ['ignore', fd, fd],
    });
    fs.closeSync(fd);
    live.add(child);
    child.on('exit', () => live.delete(child));
    const proc = { name, child, log };
    child.on('error', (err) => {
      fs.appendFileSync(log, `\nspawn failed: ${err.message}\n`);
    });
    this.procs.push(proc);
    return proc;
  }

  async start() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drawbridge-e2e-'));
    // nginx workers drop root; they must be able to enter the prefix.
    fs.chmodSync(this.dir, 0o755);

    const bin = path.resolve(REPO, process.env.DRAWBRIDGE_BIN || 'target/debug/drawbridge');
    if (!fs.existsSync(bin)) throw new Error(`drawbridge binary not found at ${bin} (set DRAWBRIDGE_BIN or run cargo build)`);

    this.redisPort = await freePort();
    const redis = this.spawn('redis', 'redis-server', [
      '--port', String(this.redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--protected-mode', 'no',
    ]);
    await waitFor('redis', () => redisPing(this.redisPort), { proc: redis });

    const secret = crypto.randomBytes(32).toString('hex');
    for (const id of ['a', 'b']) {
      const port = await freePort();
      const proc = this.spawn(`drawbridge-${id}`, bin, [], {
        DRAWBRIDGE_LISTEN: `127.0.0.1:${port}`,
        DRAWBRIDGE_REDIS_URL: `redis://127.0.0.1:${this.redisPort}`,
        DRAWBRIDGE_JWT_SECRET: secret,
        DRAWBRIDGE_INSTANCE_ID: id,
        DRAWBRIDGE_WS_UPGRADES_PER_MINUTE: '0',
        RUST_LOG: process.env.RUST_LOG || 'info',
        ...this.env,
      });
      this.instances.push({ id, port, proc });
    }
    for (const inst of this.instances) {
      await waitFor(`drawbridge ${inst.id} /readyz`, () => httpOk(`http://127.0.0.1:${inst.port}/readyz`), { proc: inst.proc });
    }

    this.port = await freePort();
    const conf = path.join(this.dir, 'drawbridge.conf');
    fs.writeFileSync(conf, renderNginx({
      NGINX_LISTEN: `127.0.0.1:${this.port}`,
      NGINX_PREFIX: this.dir,
      DRAWBRIDGE_UPSTREAM_SERVERS: this.instances.map((i) => `        server 127.0.0.1:${i.port};`).join('\n'),
    }));
    const nginx = this.spawn('nginx', process.env.NGINX_BIN || 'nginx', ['-p', this.dir, '-c', conf, '-e', 'stderr']);
    this.nginx = nginx;
    await waitFor('nginx', () => httpOk(`http://127.0.0.1:${this.port}/readyz`), { proc: nginx });
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  /** Ends every process (TERM, then KILL after a grace period) and removes the temp dir. */
  async stop() {
    const procs = this.procs.slice().reverse();
    await Promise.all(procs.map(async ({ child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const done = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
    }));
    try {
      fs.copyFileSync(path.join(this.dir, 'error.log'), path.join(ARTIFACTS, 'logs', `${this.label}-nginx-error.log`));
    } catch { /* nginx never started */ }
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Fills `${NAME}` placeholders; nginx's own `$variables` have no braces and stay as they are. */
function renderNginx(vars) {
  return fs.readFileSync(TEMPLATE, 'utf8').replace(/\$\{([A-Z_]+)\}/g, (m, name) => {
    if (!(name in vars)) throw new Error(`nginx template: no value for ${m}`);
    return vars[name];
  });
}

module.exports = { Cluster, ARTIFACTS, REPO, freePort, sleep, waitFor };
