// The machinery of the browser tests (tests/browser/browser.test.mjs): a small HTTP server on
// 127.0.0.1 that serves an emitted package, the test page and the case files and receives the
// page's reports, and launchers for headless Chromium and Firefox ESR with the flags and
// prefs of DESIGN.md ("Machines and how to get each part"). No WebDriver: the page reports
// to the server. Node built-ins only.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.wgsl': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
};

/**
 * Starts the server on a free port of 127.0.0.1. `mounts` maps a URL prefix ('/pkg/') to a
 * folder; a GET under it serves the file (never outside the folder). The page reports with
 *   POST /log     one JSON object per request ({level, message}): console errors, window errors
 *   POST /result  the final JSON result (once)
 * Returns { url, logs, result: Promise<object>, requests, close() }.
 */
export async function startServer(mounts) {
  const logs = [];
  const requests = [];
  let resolveResult;
  const result = new Promise((resolve) => {
    resolveResult = resolve;
  });
  const roots = Object.entries(mounts).map(([prefix, dir]) => [prefix, path.resolve(dir)]);

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    requests.push(`${req.method} ${url.pathname}`);
    const send = (status, body, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method === 'POST' && (url.pathname === '/log' || url.pathname === '/result')) {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body;
        try {
          body = JSON.parse(text);
        } catch {
          body = { level: 'error', message: `unparsable report to ${url.pathname}: ${text.slice(0, 500)}` };
        }
        if (url.pathname === '/log') logs.push(body);
        else resolveResult(body);
        send(200, 'ok');
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');
    if (url.pathname === '/favicon.ico') return send(204, '');
    for (const [prefix, dir] of roots) {
      if (!url.pathname.startsWith(prefix)) continue;
      const file = path.resolve(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
      if (file !== dir && !file.startsWith(dir + path.sep)) return send(403, 'outside the served folder');
      fs.readFile(file, (err, data) => {
        if (err) return send(404, `not found: ${url.pathname}`);
        send(200, data, MIME[path.extname(file)] ?? 'application/octet-stream');
      });
      return;
    }
    send(404, `not found: ${url.pathname}`);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    logs,
    requests,
    result,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Browsers

/** The first of `names` on PATH (absolute path), or null. */
function which(names) {
  for (const name of names) {
    if (path.isAbsolute(name)) {
      if (fs.existsSync(name)) return name;
      continue;
    }
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
      const file = path.join(dir, name);
      try {
        fs.accessSync(file, fs.constants.X_OK);
        return file;
      } catch {
        // not here
      }
    }
  }
  return null;
}

/** Firefox prefs of the fresh profile (user.js): WebGPU on (DESIGN.md), nothing phoning home. */
export const FIREFOX_PREFS = {
  // WebGPU is off by default on Linux in 153 ESR.
  'dom.webgpu.enabled': true,
  'gfx.webgpu.ignore-blocklist': true,
  'gfx.webgpu.force-enabled': true,
  // The page's console goes to stdout too (the test shows it when something fails).
  'devtools.console.stdout.content': true,
  // Quiet, quick start without network.
  'browser.shell.checkDefaultBrowser': false,
  'browser.startup.homepage_override.mstone': 'ignore',
  'browser.aboutwelcome.enabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'datareporting.healthreport.uploadEnabled': false,
  'toolkit.telemetry.enabled': false,
  'app.update.enabled': false,
  'app.normandy.enabled': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'browser.safebrowsing.downloads.enabled': false,
  'extensions.update.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'browser.region.network.url': '',
  'browser.sessionstore.resume_from_crash': false,
};

/** Chromium's flags (DESIGN.md), plus console messages on stderr. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--enable-logging=stderr',
  '--v=0',
];

export const BROWSERS = {
  chromium: {
    target: 'chrome',
    env: 'SHADERGEN_CHROMIUM',
    executables: ['chromium', 'chromium-browser', '/usr/lib/chromium/chromium'],
    package: 'chromium',
    args: (profile, url, webgpu) => [
      ...CHROMIUM_FLAGS.filter((f) => webgpu || !/unsafe-webgpu|Vulkan/.test(f)),
      ...(webgpu ? [] : ['--disable-features=WebGPUService', '--disable-gpu']),
      `--user-data-dir=${profile}`,
      url,
    ],
    prepare() {},
    // Console lines ("CONSOLE(12)" / ":INFO:CONSOLE") and JS errors in its log.
    consoleLine: (line) => /CONSOLE|Uncaught|WebGPU|Tint|WGSL/i.test(line),
  },
  firefox: {
    target: 'firefox',
    env: 'SHADERGEN_FIREFOX',
    executables: ['firefox-esr', 'firefox'],
    package: 'firefox-esr',
    args: (profile, url) => ['--headless', '--no-remote', '--profile', profile, url],
    prepare(profile, webgpu) {
      const prefs = { ...FIREFOX_PREFS, ...(webgpu ? {} : { 'dom.webgpu.enabled': false }) };
      const lines = Object.entries(prefs).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`);
      fs.writeFileSync(path.join(profile, 'user.js'), `${lines.join('\n')}\n`);
    },
    consoleLine: (line) => /^console\.|JavaScript error|WebGPU|wgpu|naga/i.test(line),
  },
};

/**
 * The browser's executable and version, or { reason } when it is not installed. $SHADERGEN_CHROMIUM
 * / $SHADERGEN_FIREFOX name the executable instead of a search of PATH.
 */
export function findBrowser(name) {
  const b = BROWSERS[name];
  const chosen = process.env[b.env];
  const exe = chosen ? which([chosen]) : which(b.executables);
  if (!exe) {
    if (chosen) return { reason: `${b.env}=${chosen}: no such executable` };
    return { reason: `${b.executables[0]} not found on PATH (install Debian's ${b.package}: bash .ci/setup.sh)` };
  }
  const v = spawnSync(exe, ['--version'], { encoding: 'utf8', timeout: 20_000 });
  const version = (v.stdout ?? '').trim().split('\n').pop() || null;
  return { exe, version };
}

/**
 * Launches `name` headless on `url` with a fresh profile (`webgpu: false`: without the flags
 * or prefs that enable WebGPU, to test a browser without it). Returns { child, output (array of
 * lines, stdout and stderr), exited (Promise of {code, signal}), kill() }. kill() ends the
 * whole process group (the browser and every child it started) and removes the profile.
 */
export function launch(name, exe, url, { webgpu = true } = {}) {
  const b = BROWSERS[name];
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), `shadergen-${name}-profile-`));
  b.prepare(profile, webgpu);
  const env = { ...process.env };
  // Nothing to talk to here: no D-Bus session, no display.
  delete env.DBUS_SESSION_BUS_ADDRESS;
  delete env.DISPLAY;
  delete env.WAYLAND_DISPLAY;
  env.MOZ_CRASHREPORTER_DISABLE = '1';
  const child = spawn(exe, b.args(profile, url, webgpu), { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
  const output = [];
  for (const stream of [child.stdout, child.stderr]) {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop();
      output.push(...lines);
      if (output.length > 5000) output.splice(0, output.length - 5000);
    });
    stream.on('end', () => rest && output.push(rest));
  }
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (e) => resolve({ code: null, signal: null, error: e.message }));
  });
  let killed = false;
  const kill = async () => {
    if (!killed) {
      killed = true;
      const signalGroup = (sig) => {
        try {
          process.kill(-child.pid, sig);
        } catch {
          // already gone
        }
      };
      signalGroup('SIGTERM');
      const done = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 3000))]);
      // Children may outlive the main process: SIGKILL whatever is left of the group.
      signalGroup('SIGKILL');
      if (!done) await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
    }
    fs.rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
  };
  return { child, output, exited, kill, profile, consoleLines: () => output.filter(b.consoleLine) };
}
