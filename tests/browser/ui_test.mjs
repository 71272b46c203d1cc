// Drives strata's admin page (GET /_strata/ui) in headless Chromium.
//
//   node tests/browser/ui_test.mjs ADMIN_URL TOKEN SCREENSHOT.png
//        [--cache=http] [--tag=TAG] [--explain=PATH] [--warm=PATH,PATH...]
//
// Loads the page, types a wrong token (the page must ask again), then the right
// one; waits until the caches table shows --cache with items >= 1, the routes
// table has a row and the chart has two samples; reloads (the token is kept for
// the tab); invalidates --tag through the form and reads the removed count;
// asks the explain box about --explain and the warm form for --warm; saves a
// full-page screenshot. The page must not request anything outside ADMIN_URL
// and must throw no error.
//
// Prints one JSON line on stdout: {"removed": N, "explain": {member: text},
// "warm": [[url, status, cache status, seconds]...], "caches": [...],
// "routes": [...]}. Exits 1 with a message on stderr when a step fails (with a
// screenshot of the failure beside SCREENSHOT), 2 on bad usage or a missing
// browser. Chromium: $STRATA_CHROMIUM, else /usr/bin/chromium.
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

const STEP_MS = 15000;

function usage(msg) {
  process.stderr.write(`ui_test: ${msg}\nusage: node ui_test.mjs ADMIN_URL TOKEN SCREENSHOT ` +
    `[--cache=NAME] [--tag=TAG] [--explain=PATH] [--warm=PATH,PATH...]\n`);
  process.exit(2);
}

const positional = [];
const opt = { cache: 'http', tag: '', explain: '', warm: '' };
for (const a of process.argv.slice(2)) {
  const m = /^--([a-z]+)=(.*)$/s.exec(a);
  if (m) {
    if (!(m[1] in opt)) usage(`unknown option ${a}`);
    opt[m[1]] = m[2];
  } else {
    positional.push(a);
  }
}
if (positional.length !== 3) usage('expected ADMIN_URL TOKEN SCREENSHOT');
const [adminUrl, token, shotPath] = positional;
const origin = new URL(adminUrl).origin;
const executablePath = process.env.STRATA_CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  usage(`no Chromium at ${executablePath}: install Debian's chromium (scripts/install-deps)`);
}

let step = 'start';
const problems = [];
// No background traffic: the machine's network is closed, and a test should
// not depend on what Chromium would fetch on its own.
const browser = await chromium.launch({
  executablePath, headless: true, timeout: 30000,
  args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin + '/') && !u.startsWith('data:')) {
      problems.push(`the page requested ${u} (outside the admin listener)`);
    }
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A refused token is logged by Chromium as a failed resource: expected.
    if (m.type() === 'error' && !/status of 401/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });

  step = 'load the page';
  const res = await page.goto(`${adminUrl}/_strata/ui`, { waitUntil: 'load' });
  if (!res || res.status() !== 200) {
    throw new Error(`GET /_strata/ui: status ${res ? res.status() : 'none'}`);
  }
  const ctype = res.headers()['content-type'] || '';
  if (!/^text\/html/i.test(ctype)) throw new Error(`GET /_strata/ui: Content-Type ${ctype}`);

  step = 'a wrong token is refused and asked for again';
  await page.fill('#token', `wrong-${token}`);
  await page.click('#token-save');
  await page.waitForFunction(() => {
    const s = document.getElementById('status');
    return s.classList.contains('bad') && /refused/i.test(s.textContent);
  });
  if (await page.evaluate(() => sessionStorage.length) !== 0) {
    throw new Error('the refused token is still in sessionStorage');
  }

  const cacheItems = async () => {
    step = `the caches table shows cache '${opt.cache}' with items >= 1`;
    await page.waitForFunction((name) => {
      for (const tr of document.querySelectorAll('#caches-table tbody tr')) {
        if (tr.dataset.cache !== name) continue;
        const td = tr.querySelector('td[data-field="items"]');
        return td && Number(td.dataset.value) >= 1;
      }
      return false;
    }, opt.cache);
  };

  step = 'enter the token';
  await page.fill('#token', token);
  await page.press('#token', 'Enter');
  await cacheItems();

  step = 'the token is kept for the tab across a reload';
  await page.reload({ waitUntil: 'load' });
  await cacheItems();

  step = 'the routes table has a row';
  await page.waitForSelector('#routes-table tbody tr[data-route]', { state: 'attached' });

  step = 'the chart has two samples';
  await page.waitForFunction(() => Number(document.getElementById('chart').dataset.samples) >= 2);

  const out = {};
  const tableRows = (sel) => page.$$eval(`${sel} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.cells].map((td) => td.textContent.trim())));
  out.caches = await tableRows('#caches-table');
  out.routes = await tableRows('#routes-table');

  // Submit a form and wait for its result box to settle; an error shown there fails.
  const submit = async (button, box) => {
    await page.$eval(box, (e) => { delete e.dataset.state; });
    await page.click(button);
    await page.waitForFunction((b) => {
      const s = document.querySelector(b).dataset.state;
      return s === 'ok' || s === 'error';
    }, box, { timeout: 60000 });
    const [state, text] = await page.$eval(box, (e) => [e.dataset.state, e.textContent.trim()]);
    if (state !== 'ok') throw new Error(`${box}: ${text}`);
    return text;
  };

  if (opt.tag) {
    step = `invalidate tag '${opt.tag}' through the form`;
    await page.selectOption('#inv-kind', 'tags');
    await page.fill('#inv-value', opt.tag);
    await submit('#inv-submit', '#inv-result');
    out.removed = Number(await page.$eval('#inv-result', (e) => e.dataset.removed));
  }

  if (opt.explain) {
    step = `explain ${opt.explain}`;
    await page.fill('#explain-url', opt.explain);
    await submit('#explain-submit', '#explain-result');
    out.explain = await page.$$eval('#explain-result > dl > dd[data-field]', (dds) =>
      Object.fromEntries(dds.map((dd) => [dd.dataset.field, dd.textContent.trim()])));
  }

  if (opt.warm) {
    step = `warm ${opt.warm}`;
    await page.fill('#warm-urls', opt.warm.split(',').join('\n'));
    await page.fill('#warm-concurrency', '2');
    await submit('#warm-submit', '#warm-result');
    out.warm = await tableRows('#warm-result table');
  }

  step = 'screenshot';
  await page.screenshot({ path: shotPath, fullPage: true });

  if (problems.length) {
    step = 'the page stayed on the admin listener and threw no error';
    throw new Error(problems.join('\n'));
  }
  process.stdout.write(JSON.stringify(out) + '\n');
} catch (e) {
  process.stderr.write(`ui_test: FAILED at step "${step}": ${e.message}\n`);
  if (problems.length && step !== 'the page stayed on the admin listener and threw no error') {
    process.stderr.write(`ui_test: also seen:\n${problems.join('\n')}\n`);
  }
  if (page) {
    try {
      process.stderr.write(`ui_test: status line: ${await page.textContent('#status')}\n`);
      await page.screenshot({ path: shotPath.replace(/(\.png)?$/, '.failed.png'), fullPage: true });
    } catch { /* the page is gone: nothing more to show */ }
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
