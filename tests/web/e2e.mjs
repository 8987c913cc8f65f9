// Browser end-to-end tests of the envsync page: playwright-core drives Debian's headless
// /usr/bin/chromium against a real `envsync serve` on fresh demo environments.
//
//   ENVSYNC_BINARY   the envsync binary (required)
//   ENVSYNC_WEB      the page's folder (default: ../../web)
//   ENVSYNC_E2E_OUT  where failure screenshots and logs go (default: ./failures)
//   ENVSYNC_SCREENSHOTS  when set, the views are saved there as PNGs (docs/screenshots)
//   ENVSYNC_E2E_ONLY     run only the tests whose name contains this text
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const BINARY = process.env.ENVSYNC_BINARY;
const WEB = process.env.ENVSYNC_WEB || resolve(here, '../../web');
const OUT = process.env.ENVSYNC_E2E_OUT || join(here, 'failures');
const SHOTS = process.env.ENVSYNC_SCREENSHOTS || '';
if (!BINARY) {
  console.error('e2e: set ENVSYNC_BINARY to the envsync binary');
  process.exit(2);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function freePort() {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

// A demo pair of environments with `envsync serve` on them, and a browser page logged out.
class Rig {
  async start(browser, name) {
    this.name = name;
    this.dir = mkdtempSync(join(tmpdir(), 'envsync-e2e-'));
    execFileSync(BINARY, ['demo', 'init', this.dir], { stdio: 'ignore' });
    [this.email, this.password] = readFileSync(join(this.dir, 'demo-login.txt'), 'utf8').trim().split('\n');
    this.port = await freePort();
    this.base = `http://127.0.0.1:${this.port}`;
    this.log = '';
    this.server = spawn(BINARY, ['--config', join(this.dir, 'envsync.toml'), 'serve', '--listen',
      `127.0.0.1:${this.port}`, '--poll', '1', '--web', WEB], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.server.stderr.on('data', (chunk) => { this.log += chunk; });
    for (let i = 0; i < 200; i++) {
      try {
        if ((await fetch(`${this.base}/api/v1/health`)).ok) break;
      } catch { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    this.context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    this.page = await this.context.newPage();
    this.problems = [];
    this.page.on('pageerror', (e) => this.problems.push(`page error: ${e.message}`));
    // Every console error counts (a CSP violation shows there), except the browser's own note
    // of a 401 or 429 answer, which the page expects (logged out, a wrong password).
    this.page.on('console', (m) => {
      if (m.type() === 'error' && !/status of (401|429)/.test(m.text())) this.problems.push(`console: ${m.text()}`);
    });
    this.page.on('dialog', (d) => d.accept());
    await this.page.goto(`${this.base}/`);
    return this;
  }

  async stop(failed) {
    if (failed) {
      mkdirSync(OUT, { recursive: true });
      await this.page.screenshot({ path: join(OUT, `${this.name}.png`), fullPage: true }).catch(() => {});
      writeFileSync(join(OUT, `${this.name}.serve.log`), this.log);
    }
    await this.context.close();
    this.server.kill('SIGTERM');
    await new Promise((r) => this.server.once('exit', r));
    rmSync(this.dir, { recursive: true, force: true });
  }

  async shot(name, fullPage = true) {
    if (!SHOTS) return;
    mkdirSync(SHOTS, { recursive: true });
    await this.page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
  }

  // The API, with the page's own session.
  async get(path) {
    const response = await this.page.request.get(`${this.base}${path}`);
    check(response.ok(), `GET ${path}: ${response.status()}`);
    return response.json();
  }

  async login() {
    const page = this.page;
    await page.getByLabel('E-mail').fill(this.email);
    await page.getByLabel('Password').fill(this.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#bar').waitFor({ state: 'visible' });
  }

  // Starts a comparison TEST -> PROD from the Start view and waits for the review.
  async compare(mode = 'all') {
    const page = this.page;
    await page.goto(`${this.base}/#/start`);
    await page.locator(`input[name=mode][value=${mode}]`).check();
    await page.getByRole('button', { name: 'Start comparing environments' }).click();
    await page.waitForURL(/#\/review\/c-/);
    await page.locator('#tabpanel[aria-busy=false]').waitFor();
    return page.url().split('/').pop();
  }

  async tab(name) {
    await this.page.getByRole('tab', { name }).click();
    await this.page.locator(`#tab-${name.split(' ')[0].toLowerCase()}[aria-selected=true]`).waitFor();
    await this.page.locator('#tabpanel[aria-busy=false]').waitFor();
  }

  async syncNow({ testImport = false } = {}) {
    const page = this.page;
    await page.getByLabel('Test import').setChecked(testImport);
    await page.getByRole('button', { name: 'Synchronize now' }).click();
    await page.locator('#schedule-result').filter({ hasText: /Success|FAILURE/ }).waitFor({ timeout: 60000 });
    return page.locator('#schedule-result').textContent();
  }

  // A fresh comparison through the API, for checking what the environments hold now.
  async compareApi(mode = 'all') {
    const response = await this.page.request.post(`${this.base}/api/v1/comparisons`, {
      data: { from: 'TEST', to: 'PROD', mode },
      headers: { 'X-CSRF-Token': (await this.get('/api/v1/session')).csrf_token },
    });
    check(response.status() === 202, `POST /comparisons: ${response.status()}`);
    const { job_id: job } = await response.json();
    for (;;) {
      const state = await this.get(`/api/v1/jobs/${job}`);
      if (state.state === 'succeeded') return state.result.comparison_id;
      check(state.state !== 'failed', `comparison failed: ${state.error}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async refs(comparison, tab) {
    const page = await this.get(`/api/v1/comparisons/${comparison}?tab=${tab}&limit=1000`);
    return new Map(page.changes.map((c) => [c.ref, c]));
  }
}

const tests = [];
const test = (name, body) => tests.push({ name, body });

test('login', async (rig) => {
  await rig.shot('login', false);
  await rig.page.getByLabel('E-mail').fill(rig.email);
  await rig.page.getByLabel('Password').fill('wrong-password');
  await rig.page.getByRole('button', { name: 'Log in' }).click();
  await rig.page.getByRole('alert').filter({ hasText: 'Wrong e-mail or password' }).waitFor();
  await rig.login();
  check((await rig.page.locator('#who').textContent()).includes(rig.email), 'the user is shown');
  await rig.page.reload();
  await rig.page.locator('#bar').waitFor({ state: 'visible' });
});

test('seed example: only new records, only the page moves', async (rig) => {
  await rig.login();
  // System config turns Gallery on with the mobile_app folder, and says why.
  const page = rig.page;
  await page.goto(`${rig.base}/#/start`);
  await page.getByLabel('Select all', { exact: true }).uncheck();
  await page.locator('input[name=module][value=system_config]').check();
  check(await page.locator('input[name=module][value=gallery]').isChecked(), 'gallery is forced on');
  await page.locator('#forced-note').filter({ hasText: 'mobile_app' }).waitFor();
  await page.locator('input[name=folder][value=mobile_app]:checked').waitFor();
  await rig.shot('start');
  await page.reload();  // back to every module and every folder
  await page.locator('#bar').waitFor();

  const id = await rig.compare('new');
  await rig.tab('New records');
  const row = page.locator('[data-ref="cms_pages:8"]');
  await row.waitFor();
  check(await row.getByRole('checkbox').isChecked(), 'the new page is selected');
  check(await page.locator('[data-ref="sliders:1"]').count() === 0, 'the slider is not listed');
  const header = await rig.get(`/api/v1/comparisons/${id}?tab=modified`);
  check(header.counts.modified === 0, '"only new records" lists no modifications');
  await rig.shot('review');
  const result = await rig.syncNow();
  check(result.startsWith('Success'), `sync: ${result}`);

  const after = await rig.compareApi('all');
  check(!(await rig.refs(after, 'new')).has('cms_pages:8'), 'the page is on PROD now');
  const slider = (await rig.refs(after, 'modified')).get('sliders:1');
  check(slider && slider.reason === 'target_changed', 'PROD kept its slider edit');
});

test('ID collision resolved with insert as new', async (rig) => {
  await rig.login();
  await rig.compare('all');
  await rig.tab('Conflicts');
  const row = rig.page.locator('[data-ref="cms_pages:20"]');
  check((await row.textContent()).includes('id collision'), 'the collision is explained');
  await row.locator('summary').click();
  await row.locator('table.diff').waitFor();
  await rig.shot('review-conflict');
  await row.getByLabel('Resolution for cms_pages:20').selectOption('insert_as_new');
  await rig.page.locator('[data-ref="cms_pages:20"] input[type=checkbox]:checked').waitFor();
  const result = await rig.syncNow();
  check(result.startsWith('Success'), `sync: ${result}`);
  const after = await rig.compareApi('all');
  check(!(await rig.refs(after, 'conflicts')).has('cms_pages:20'),
    'TEST 20 and its new PROD copy are one record now');
});

test('test import changes nothing', async (rig) => {
  await rig.login();
  const before = await rig.compare('all');
  const counts = (await rig.get(`/api/v1/comparisons/${before}`)).counts;
  const result = await rig.syncNow({ testImport: true });
  check(result.includes('test import: nothing was saved'), `test import: ${result}`);
  const after = await rig.compareApi('all');
  const again = (await rig.get(`/api/v1/comparisons/${after}`)).counts;
  check(JSON.stringify(again) === JSON.stringify(counts), `counts changed: ${JSON.stringify(again)}`);
});

test('schedule, then cancel', async (rig) => {
  await rig.login();
  await rig.compare('all');
  const page = rig.page;
  await page.getByLabel('Time zone').selectOption('Europe/Berlin');
  await page.getByRole('button', { name: 'Schedule synchronization' }).click();
  await page.locator('#schedule-result').filter({ hasText: 'Scheduled for' }).waitFor();
  check((await page.locator('#schedule-result').textContent()).match(/CES?T/), 'shown in the chosen zone');
  await rig.shot('schedule', false);
  await page.getByRole('link', { name: /Messages/ }).click();
  const scheduled = page.locator('.message').filter({ hasText: 'Synchronization process' }).first();
  await scheduled.getByRole('button', { name: 'Cancel' }).click();
  await page.locator('.message').filter({ hasText: 'Synchronization process cancelled' }).waitFor();
  const { jobs } = await rig.get('/api/v1/jobs');
  check(jobs.find((j) => j.kind === 'sync').state === 'cancelled', 'the job is cancelled');
  check((await rig.get('/api/v1/history')).syncs.length === 0, 'nothing ran');
});

test('sync, the Success message, and undo', async (rig) => {
  await rig.login();
  await rig.compare('all');
  const result = await rig.syncNow();
  check(result.startsWith('Success'), `sync: ${result}`);
  const page = rig.page;
  await page.getByRole('link', { name: /Messages/ }).click();
  await page.locator('.message.success').filter({ hasText: 'Success: Synchronization process' }).waitFor();
  check(Number(await page.locator('#unread').textContent()) > 0, 'unread count shown');
  await rig.shot('messages');
  await page.getByRole('link', { name: 'History' }).click();
  const undo = page.getByRole('button', { name: /^Undo s-/ });
  await undo.waitFor();
  await rig.shot('history', false);
  await undo.click();
  await page.locator('#notice').filter({ hasText: 'Undid' }).waitFor();
  await page.locator('#history-table td.status-undone').waitFor();
});

test('thumbnails of both versions of a gallery file', async (rig) => {
  await rig.login();
  await rig.compare('all');
  await rig.tab('Modified records');
  const row = rig.page.locator('[data-ref="gallery_files:4"]');
  await row.locator('summary').click();
  const images = row.locator('.thumbs img');
  await images.nth(1).waitFor();
  for (let i = 0; i < 2; i++) {
    await rig.page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await images.nth(i).elementHandle());
  }
  const alts = await images.evaluateAll((all) => all.map((img) => img.alt));
  check(alts.join() === 'mobile_app/splash.png on TEST,mobile_app/splash.png on PROD', `thumbnails: ${alts}`);
});

test('a viewer reads but cannot change anything', async (rig) => {
  await rig.login();
  const csrf = (await rig.get('/api/v1/session')).csrf_token;
  const added = await rig.page.request.post(`${rig.base}/api/v1/users`, {
    data: { email: 'vic@shop.example', role: 'viewer', password: 'viewer-password' },
    headers: { 'X-CSRF-Token': csrf },
  });
  check(added.status() === 201, `adding the viewer: ${added.status()}`);
  await rig.compare('all');
  await rig.page.getByRole('button', { name: 'Log out' }).click();
  await rig.page.getByLabel('E-mail').waitFor();
  await rig.page.getByLabel('E-mail').fill('vic@shop.example');
  await rig.page.getByLabel('Password').fill('viewer-password');
  await rig.page.getByRole('button', { name: 'Log in' }).click();
  await rig.page.locator('#who').filter({ hasText: 'viewer' }).waitFor();
  check(await rig.page.getByRole('button', { name: 'Start comparing environments' }).isHidden(), 'no start button');
  await rig.page.getByRole('link', { name: 'Changes review' }).click();
  await rig.page.locator('#changes li').first().waitFor();
  check(await rig.page.locator('#schedule-form').isHidden(), 'no schedule form');
  check(await rig.page.locator('#changes input[type=checkbox]:enabled').count() === 0, 'checkboxes are read-only');
});

test('phone width', async (rig) => {
  await rig.page.setViewportSize({ width: 390, height: 844 });
  await rig.login();
  await rig.compare('all');
  const width = await rig.page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 400, `the page fits a phone-width screen (scroll width ${width})`);
  await rig.shot('review-phone');
});

const only = process.env.ENVSYNC_E2E_ONLY || '';
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
                                        args: ['--no-sandbox'] });
let failures = 0;
for (const { name, body } of tests.filter((t) => t.name.includes(only))) {
  const rig = await new Rig().start(browser, name.replace(/[^A-Za-z0-9]+/g, '-'));
  const started = Date.now();
  let failed = false;
  try {
    await body(rig);
    check(rig.problems.length === 0, rig.problems.join('\n'));
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed = true;
    failures++;
    console.log(`FAIL ${name}: ${e.message}\n     screenshot: ${join(OUT, `${rig.name}.png`)}`);
  }
  await rig.stop(failed);
}
await browser.close();
console.log(failures ? `${failures} of ${tests.length} browser tests failed` : `all ${tests.length} browser tests passed`);
process.exit(failures ? 1 : 0);
