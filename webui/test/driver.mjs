// driver.mjs runs one headless chromium for a Go test (internal/testenv
// browser.go) and takes orders as newline-delimited JSON on stdin, one
// answer line per order on stdout:
//
//   {"id":1,"op":"goto","url":"http://127.0.0.1:8080/"}      -> {"id":1,"ok":true,"value":200}
//   {"id":2,"op":"eval","expr":"1+1"}                          -> {"id":2,"ok":true,"value":2}
//   {"id":3,"op":"screenshot","path":"/tmp/a.png","width":1280,"height":800}
//   {"id":4,"op":"console"}   messages so far, ["error: boom", ...]
//   {"id":5,"op":"offsite"}   pages' requests to other hosts so far, all blocked
//   {"id":6,"op":"background"} connections the loopback proxy dropped: chromium's
//                              own services, and pages' WebSockets once more
//   {"id":7,"op":"close"}     closes the browser; the driver keeps answering
//   failures: {"id":N,"ok":false,"error":"..."}
//
// The first line it prints is {"event":"ready","pid":<chromium pid>,
// "version":"..."}; chromium runs in a process group of its own whose id is
// that pid, so the Go side can SIGKILL the whole browser at once. The
// driver exits when stdin closes.
//
// Nothing may leave the machine. Pages' requests to hosts other than
// loopback are intercepted, recorded and aborted; their WebSockets are
// recorded from the DevTools Network domain (interception does not see
// them). Every connection chromium would open to such a host, the page's
// WebSockets and worker requests as much as chromium's own updater, sign-in
// and time services that no flag turns off entirely, goes to a proxy on
// loopback that records and drops it: chromium bypasses a proxy for loopback
// hosts by itself. --host-resolver-rules also makes every name but localhost
// unresolvable, so nothing can reach DNS either. WebRTC's UDP is beyond
// both: pages must configure no STUN or TURN servers but the node's.
import http from 'node:http';
import readline from 'node:readline';
import puppeteer from 'puppeteer-core';

const cfg = JSON.parse(process.argv[2] || '{}');
const consoleLines = [];
const offsite = [];
const background = [];

// isLocal tells whether a host (as in URL.hostname, IPv6 in brackets) is
// this machine: localhost, the 127.0.0.0/8 loopback range or [::1].
function isLocal(host) {
  host = host.toLowerCase().replace(/\.$/, '');
  return host === 'localhost' || host.endsWith('.localhost') ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) ||
    host === '[::1]' || host === '::1';
}

// hostOf returns a URL's host name, or '' for one that does not parse
// (and so cannot be shown to be local).
function hostOf(url) {
  try {
    return new URL(url).hostname;
  } catch {
    return '';
  }
}

// A plain http:// request arrives with an absolute URL, https:// and
// WebSockets as CONNECT host:port; each is recorded and its connection
// dropped, so the page sees a network error rather than a response.
const proxy = http.createServer((req) => {
  background.push(req.url);
  req.socket.destroy();
});
proxy.on('connect', (req, socket) => {
  background.push('CONNECT ' + req.url);
  socket.destroy();
});
proxy.on('upgrade', (req, socket) => {
  background.push(req.url);
  socket.destroy();
});
proxy.on('clientError', (err, socket) => socket.destroy());
await new Promise((resolve, reject) => {
  proxy.once('error', reject);
  proxy.listen(0, '127.0.0.1', resolve);
});

const args = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  // The IP literals need excluding too: a MAP rule applies to them.
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE ::1',
  // Chromium asks a Google server for the time at every start otherwise.
  '--disable-features=NetworkTimeServiceQuerying',
  `--proxy-server=http://127.0.0.1:${proxy.address().port}`,
  ...(cfg.args || []),
];

const browser = await puppeteer.launch({
  executablePath: cfg.executablePath || '/usr/bin/chromium',
  userDataDir: cfg.userDataDir,
  headless: true,
  pipe: true,
  dumpio: true,
  args,
  defaultViewport: { width: 1280, height: 800 },
  // The Go side owns the browser's lifetime (close op, stdin EOF, SIGKILL).
  handleSIGINT: false,
  handleSIGTERM: false,
  handleSIGHUP: false,
  protocolTimeout: 120000,
});
let closed = false;
browser.on('disconnected', () => { closed = true; });

function location(msg) {
  const loc = msg.location && msg.location();
  return loc && loc.url ? ` (${loc.url}:${loc.lineNumber ?? 0})` : '';
}

// watch records a page's console and errors and intercepts its requests.
async function watch(page) {
  page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}${msg.type() === 'error' ? location(msg) : ''}`));
  page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err && err.message ? err.message : String(err)}`));
  page.on('requestfailed', (req) => {
    const f = req.failure();
    consoleLines.push(`requestfailed: ${req.url()} ${f ? f.errorText : ''}`);
  });
  const cdp = await page.createCDPSession();
  cdp.on('Network.webSocketCreated', ({ url }) => {
    if (!isLocal(hostOf(url))) offsite.push(url);
  });
  await cdp.send('Network.enable');
  await page.setRequestInterception(true);
  page.on('request', (req) => {
    if (req.isInterceptResolutionHandled()) return;
    if (/^(data|blob|about):/.test(req.url()) || isLocal(hostOf(req.url()))) {
      req.continue();
      return;
    }
    offsite.push(req.url());
    req.abort('blockedbyclient');
  });
}

const [first] = await browser.pages();
const page = first || (await browser.newPage());
await watch(page);
browser.on('targetcreated', async (target) => {
  if (target.type() !== 'page') return;
  try {
    const p = await target.page();
    if (p && p !== page) await watch(p);
  } catch (err) {
    consoleLines.push(`driver: watching a new page: ${err.message}`);
  }
});

const proc = browser.process();
const version = await browser.version();
write({ event: 'ready', pid: proc ? proc.pid : 0, version });

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function handle(msg) {
  switch (msg.op) {
    case 'goto': {
      const resp = await page.goto(msg.url, { waitUntil: 'load', timeout: msg.timeout || 30000 });
      return resp ? resp.status() : null;
    }
    case 'eval': {
      // A string is evaluated as an expression; a promise it yields is
      // awaited and the result comes back as JSON (undefined as null).
      const v = await page.evaluate(msg.expr);
      return v === undefined ? null : v;
    }
    case 'screenshot':
      await page.setViewport({ width: msg.width || 1280, height: msg.height || 800 });
      await page.screenshot({ path: msg.path, type: 'png' });
      return null;
    case 'console':
      return consoleLines;
    case 'offsite':
      return offsite;
    case 'background':
      return background;
    case 'close':
      if (!closed) await browser.close();
      return null;
    default:
      throw new Error(`unknown op ${JSON.stringify(msg.op)}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (err) {
    write({ ok: false, error: `bad order ${JSON.stringify(line)}: ${err.message}` });
    return;
  }
  try {
    if (closed && !['console', 'offsite', 'background', 'close'].includes(msg.op)) {
      throw new Error('browser is closed');
    }
    write({ id: msg.id, ok: true, value: await handle(msg) });
  } catch (err) {
    write({ id: msg.id, ok: false, error: err && err.message ? err.message : String(err) });
  }
});
rl.on('close', async () => {
  try {
    if (!closed) await browser.close();
  } catch {
    // The browser may already be gone (killed); exit regardless.
  }
  proxy.close();
  process.exit(0);
});
