// Drives the memlsp extension in a real VS Code (code-server) from headless Chromium with
// playwright-core, and writes what it saw as JSON. Started by tests/editors/test_vscode.py:
//
//   node drive.cjs CONFIG.json
//
// CONFIG: { url, playwright (module path), chromium (executable), outDir, result (JSON path),
//           stepTimeoutMs, files: { add, lint } (workspace-relative names),
//           settingsFile (the workspace's .vscode/settings.json; the last step edits it) }
//
// Every step is recorded as { ok, detail, ms } (or { skipped: reason }); a failing step takes a
// screenshot and the run goes on where that makes sense, so one run reports every check.
'use strict';

const fs = require('fs');
const path = require('path');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require(config.playwright);

const STEP = config.stepTimeoutMs;
const STATUS_ITEM = '[id="memlsp.memlsp.status"]';
const started = Date.now();
const result = { steps: {}, features: null, statusText: '', log: [] };

function log(message) {
  const line = `${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s  ${message}`;
  result.log.push(line);
  console.log(line);
}

function save() {
  fs.writeFileSync(config.result, JSON.stringify(result, null, 2));
}

/** Poll `probe` (returns a truthy value when done) until it succeeds or `ms` passes. */
async function until(probe, ms, interval = 250) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last) {
      return last;
    }
    if (Date.now() > deadline) {
      return null;
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

async function shot(page, name) {
  const file = path.join(config.outDir, `${name}.png`);
  try {
    await page.screenshot({ path: file });
  } catch (error) {
    log(`screenshot ${name} failed: ${error.message}`);
  }
  return file;
}

/** Run one step; an exception or a falsy `detail.ok` marks it failed (with a screenshot). */
async function step(page, name, body) {
  const t0 = Date.now();
  log(`step ${name}`);
  let record;
  try {
    record = await body();
  } catch (error) {
    record = { ok: false, detail: `error: ${error && error.stack ? error.stack : error}` };
  }
  record.ms = Date.now() - t0;
  if (!record.ok && !record.skipped) {
    record.screenshot = await shot(page, `failed-${name}`);
  }
  result.steps[name] = record;
  log(`step ${name}: ${record.skipped ? `skipped (${record.skipped})` : record.ok ? 'ok' : 'FAILED'} ` +
      `in ${(record.ms / 1000).toFixed(1)} s${record.detail ? ` — ${String(record.detail).slice(0, 300)}` : ''}`);
  save();
  return record;
}

const text = (s) => (s || '').replace(/\u00a0/g, ' ');

async function statusLabel(page) {
  const el = await page.$(STATUS_ITEM);
  return el ? text(await el.getAttribute('aria-label')) : '';
}

/**
 * The text of the active editor's visible lines, in order (Monaco positions them by `top`),
 * without ghost text (rendered inside the lines).
 */
async function editorText(page) {
  return text(
    await page.evaluate(() => {
      const lines = Array.from(
        document.querySelectorAll('.editor-group-container.active .monaco-editor .view-lines .view-line'),
      );
      lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
      return lines
        .map((line) => {
          const copy = line.cloneNode(true);
          copy.querySelectorAll('[class*="ghost-text"]').forEach((ghost) => ghost.remove());
          return copy.textContent;
        })
        .join('\n');
    }),
  );
}

/** Ghost text: the part inside the cursor's line, then any lines shown below it. */
/** The editor's text once it stops changing (Monaco re-renders lines over several frames). */
async function settledText(page) {
  let last = await editorText(page);
  for (let i = 0; i < 20; i++) {
    await page.waitForTimeout(250);
    const now = await editorText(page);
    if (now === last) {
      return now;
    }
    last = now;
  }
  return last;
}

async function ghostText(page) {
  return text(
    await page.evaluate(() => {
      const editor = document.querySelector('.editor-group-container.active .monaco-editor');
      if (!editor) {
        return '';
      }
      const inline = Array.from(editor.querySelectorAll('.view-lines [class*="ghost-text"]'))
        .map((el) => el.textContent)
        .join('');
      const below = Array.from(editor.querySelectorAll('.view-zones [class*="ghost-text"]'))
        .filter((el) => !el.parentElement.closest('.view-zones [class*="ghost-text"]'))
        .map((el) => el.innerText)
        .join('\n');
      return below ? `${inline}\n${below}` : inline;
    }),
  );
}

async function openFile(page, name) {
  await page.keyboard.press('Control+P');
  await page.waitForSelector('.quick-input-widget input', { state: 'visible', timeout: STEP });
  await page.keyboard.type(name);
  await until(
    () => page.evaluate((n) => Array.from(document.querySelectorAll('.quick-input-list .monaco-list-row'))
      .some((row) => (row.getAttribute('aria-label') || '').includes(n)), name),
    STEP,
  );
  await page.keyboard.press('Enter');
  await page.waitForSelector(`.tab.active[aria-label*="${name}"]`, { timeout: STEP });
  // The editor has focus and its text is laid out.
  await until(async () => (await editorText(page)).trim().length > 0, STEP);
}

async function runCommand(page, title) {
  await page.keyboard.press('F1');
  await page.waitForSelector('.quick-input-widget input', { state: 'visible', timeout: STEP });
  await page.keyboard.type(title);
  await until(
    () => page.evaluate((t) => Array.from(document.querySelectorAll('.quick-input-list .monaco-list-row'))
      .some((row) => (row.getAttribute('aria-label') || '').includes(t)), title),
    STEP,
  );
  await page.keyboard.press('Enter');
}

/** The text of the notification toasts on screen. */
async function notifications(page) {
  return text(await page.evaluate(() =>
    Array.from(document.querySelectorAll('.notifications-toasts .notification-toast'))
      .map((toast) => toast.getAttribute('aria-label') || toast.innerText)
      .join('\n')));
}

async function clearNotifications(page) {
  await runCommand(page, 'Notifications: Clear All Notifications');
  await until(async () => (await notifications(page)) === '', 5000);
}

async function main() {
  fs.mkdirSync(config.outDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: config.chromium,
    headless: true,
    // Playwright gives each launch a fresh profile; these keep Chromium off the (closed) network.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1024, height: 640 } });
    page.setDefaultTimeout(STEP);
    await run(page);
  } finally {
    await browser.close();
  }
}

async function run(page) {
  const workbench = await step(page, 'workbench', async () => {
    await page.goto(config.url, { timeout: STEP });
    await page.waitForSelector('.monaco-workbench', { timeout: STEP });
    return { ok: true };
  });
  if (!workbench.ok) {
    return;
  }

  const ready = await step(page, 'server_ready', async () => {
    const label = await until(async () => {
      const l = await statusLabel(page);
      return /^memlsp: (ready|busy|working)/.test(l) || /not found|stopped/.test(l) ? l : null;
    }, STEP);
    return { ok: Boolean(label && /^memlsp: (ready|busy|working)/.test(label)), detail: `status bar: ${label || await statusLabel(page) || 'no memlsp item'}` };
  });
  if (!ready.ok) {
    return;
  }

  // -- ghost text after a newline in `def add(a, b):` -----------------------------------------
  const ghost = await step(page, 'ghost_text', async () => {
    await openFile(page, config.files.add);
    await page.keyboard.press('Control+Home');
    await page.keyboard.press('End');
    // A newline and the indentation, typed (auto-indent is off in the test's user settings).
    await page.keyboard.press('Enter');
    await page.keyboard.type('    ');
    // On a loaded machine VS Code sometimes makes no inline request for the first keystrokes
    // after the client starts (its provider is not known to the window yet). A request shows as
    // "busy" in our status bar; when none comes, type a space and delete it, as a user would
    // (in that order: Backspace in indentation removes a whole indent level).
    let retyped = 0;
    const asked = async () => (await ghostText(page)) !== '' || /^memlsp: busy/.test(await statusLabel(page));
    while (!(await until(asked, 15_000, 100)) && retyped < 3) {
      retyped += 1;
      log(`no inline request yet: typing a space and deleting it (${retyped})`);
      await page.keyboard.type(' ');
      await page.keyboard.press('Backspace');
    }
    const seen = await until(async () => {
      const g = await ghostText(page);
      return g.includes('return') ? g : null;
    }, STEP);
    await shot(page, 'inline-completion');
    return { ok: Boolean(seen), text: seen || '', retyped, detail: seen ? `ghost text: ${JSON.stringify(seen)}${retyped ? ` (after retyping ${retyped}x)` : ''}` : `no ghost text with "return"; ghost: ${JSON.stringify(await ghostText(page))}, editor: ${JSON.stringify(await editorText(page))}` };
  });

  const line2 = async () => (await editorText(page)).split('\n')[1] || '';
  if (ghost.ok) {
    // Word by word (VS Code's acceptNextWord, Ctrl+Right), then the rest with Tab.
    await step(page, 'word_accept', async () => {
      await page.keyboard.press('Control+ArrowRight');
      const line = await until(async () => {
        const l = await line2();
        return l.trim() !== '' ? l : null;
      }, 10_000);
      // A proper prefix of the suggestion: part of it, not all.
      const taken = (line || '').trim();
      const whole = ghost.text.split('\n')[0].trim();
      const ok = taken !== '' && whole.startsWith(taken) && taken.length < whole.length;
      return { ok, detail: `line 2 after Ctrl+Right: ${JSON.stringify(line)} (suggestion ${JSON.stringify(whole)})` };
    });
    await step(page, 'tab_accepts', async () => {
      await page.keyboard.press('Tab');
      const line = await until(async () => {
        const l = await line2();
        return /return\s+\S/.test(l) ? l : null;
      }, 10_000);
      return { ok: Boolean(line), detail: line ? `line 2 after Tab: ${JSON.stringify(line)}` : `editor: ${JSON.stringify(await editorText(page))}` };
    });
    // Back to the indented empty line for the next step.
    await page.keyboard.press('Escape');
    await page.keyboard.press('End');
    await page.keyboard.press('Shift+Home'); // to the first non-blank character
    await page.keyboard.press('Delete');
    await until(async () => (await line2()).trim() === '', 5000);
  } else {
    result.steps.word_accept = { skipped: 'no ghost text to accept' };
    result.steps.tab_accepts = { skipped: 'no ghost text to accept' };
  }

  // -- our item in the suggest widget (Ctrl+Space after `ret`) --------------------------------
  await step(page, 'suggest_widget', async () => {
    if (!ghost.ok) {
      await openFile(page, config.files.add);
      await page.keyboard.press('Control+Home');
      await page.keyboard.press('End');
      await page.keyboard.press('Enter');
      await page.keyboard.type('    ');
    }
    await page.keyboard.type('ret');
    await page.keyboard.press('Control+Space');
    const rows = async () => text(await page.evaluate(() =>
      Array.from(document.querySelectorAll('.suggest-widget.visible .monaco-list-row'))
        .map((row) => `${row.getAttribute('aria-label') || ''} | ${row.textContent}`)
        .join('\n')));
    const ours = await until(async () => {
      const all = await rows();
      const hit = all.split('\n').find((row) => row.includes('memlsp') || /return\s+a\s*\+\s*b/.test(row));
      if (!hit && all && !(await page.$('.suggest-widget.visible .monaco-list-row .codicon-loading'))) {
        // A list without our item yet (the model may still be working): ask again.
        await page.keyboard.press('Control+Space');
      }
      return hit || null;
    }, STEP, 1000);
    await shot(page, 'suggest-widget');
    const detail = ours ? `row: ${JSON.stringify(ours)}` : `rows: ${JSON.stringify(await rows())}`;
    await page.keyboard.press('Escape');
    await page.keyboard.press('Escape');
    return { ok: Boolean(ours), detail };
  });

  // -- memlsp: Show Status (also tells which features the server has) -------------------------
  await step(page, 'show_status', async () => {
    // The model shown in the status bar comes from memlsp/status after the requests above.
    const label = await until(async () => {
      const l = await statusLabel(page);
      return /model /.test(l) ? l : null;
    }, 20_000);
    await runCommand(page, 'memlsp: Show Status');
    // The channel ends with the summary and scrolls to it: the visible lines hold it.
    const panelText = async () => text(await page.evaluate(() => {
      const lines = Array.from(document.querySelectorAll('.part.panel .view-lines .view-line'));
      lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
      return lines.map((line) => line.textContent).join('\n');
    }));
    await until(async () => (await panelText()).includes('Config issues:'), STEP); // the last line
    await runCommand(page, 'View: Toggle Maximized Panel'); // room for the whole summary
    const shown = await until(async () => {
      const t = await panelText();
      return t.includes('Features:') && t.includes('Config issues:') ? t : null;
    }, STEP);
    await shot(page, 'status');
    await runCommand(page, 'View: Toggle Maximized Panel');
    result.statusText = shown || (await panelText());
    // "Features:" then one "  - name" line each.
    const lines = result.statusText.split('\n');
    const at = lines.findIndex((line) => line.startsWith('Features:'));
    result.features = at < 0 ? null : [];
    for (let i = at + 1; at >= 0 && i < lines.length && /^\s+- /.test(lines[i]); i++) {
      result.features.push(lines[i].replace(/^\s+- /, '').trim());
    }
    result.statusBar = label || (await statusLabel(page));
    return { ok: Boolean(shown), detail: `status bar: ${result.statusBar}; features: ${result.features}` };
  });

  const features = result.features || [];

  // -- memlsp: Reindex Workspace ---------------------------------------------------------------
  await step(page, 'reindex_command', async () => {
    await clearNotifications(page);
    await runCommand(page, 'memlsp: Reindex Workspace');
    if (!features.includes('reindex')) {
      // Without the server command: a warning that says so, not an error.
      const shown = await until(async () => {
        const n = await notifications(page);
        return /cannot reindex/.test(n) ? n : null;
      }, 20_000);
      return { ok: Boolean(shown), detail: `without memlsp.reindex: ${JSON.stringify(shown || (await notifications(page)))}` };
    }
    // With it: no error notification. Its $/progress shows in the status bar (noted, not
    // required: a two-file workspace may index faster than we look).
    const progress = await until(async () => {
      const l = await statusLabel(page);
      return /^memlsp: working/.test(l) ? l : null;
    }, 5000, 100);
    await page.waitForTimeout(1000);
    const n = await notifications(page);
    return { ok: !/reindexing failed/.test(n), detail: `notifications: ${JSON.stringify(n)}; progress in the status bar: ${JSON.stringify(progress)}` };
  });

  // -- memlsp: Rewrite Selection with an Instruction… ------------------------------------------
  await step(page, 'rewrite_selection', async () => {
    await clearNotifications(page);
    await page.keyboard.press('Control+1'); // the editor group (the status channel took focus)
    await openFile(page, config.files.add);
    await page.keyboard.press('Control+End');
    await page.keyboard.press('Shift+ArrowUp'); // select the print(...) line
    await page.keyboard.press('Shift+Home');
    const before = await editorText(page);
    await runCommand(page, 'memlsp: Rewrite Selection with an Instruction');
    if (!features.includes('rewrite selection')) {
      const shown = await until(async () => {
        const n = await notifications(page);
        return /cannot rewrite/.test(n) ? n : null;
      }, 20_000);
      return { ok: Boolean(shown), detail: `without memlsp.rewriteSelection: ${JSON.stringify(shown || (await notifications(page)))}` };
    }
    await page.waitForSelector('.quick-input-widget input', { state: 'visible' });
    await page.keyboard.type('print the sum of 2 and 3 instead');
    await page.keyboard.press('Enter');
    const changed = await until(async () => (await editorText(page)) !== before, STEP, 500);
    const after = changed ? await settledText(page) : null;
    await shot(page, 'rewrite-selection');
    const n = await notifications(page);
    return { ok: Boolean(after) && !/rewrite failed/.test(n), detail: after ? `text now: ${JSON.stringify(after)}` : `unchanged; notifications: ${JSON.stringify(n)}` };
  });

  // -- diagnostics on save and a code action: only when the server has them -------------------
  const reviews = features.includes('diagnostics on save');
  const actions = features.includes('code actions');
  let diagnostics = { skipped: 'the server does not advertise diagnostics on save (yet)' };
  if (reviews) {
    diagnostics = await step(page, 'diagnostics_on_save', async () => {
      await openFile(page, config.files.lint);
      await page.keyboard.press('Control+End');
      await page.keyboard.type('\n');
      await page.keyboard.press('Control+S');
      await page.keyboard.press('Control+Shift+M');
      const markers = async () => text(await page.evaluate(() =>
        Array.from(document.querySelectorAll('.markers-panel .monaco-list-row'))
          .map((row) => row.getAttribute('aria-label') || row.textContent)
          .join('\n')));
      let progress = null; // the review's $/progress in the status bar (noted, not required)
      const seen = await until(async () => {
        const l = await statusLabel(page);
        if (!progress && /^memlsp: working/.test(l)) {
          progress = l;
        }
        const m = await markers();
        return /\bos\b|unused|F401/i.test(m) ? m : null;
      }, STEP, 250);
      await shot(page, 'problems');
      const where = `progress in the status bar: ${JSON.stringify(progress)}`;
      return { ok: Boolean(seen), detail: `${where}; problems: ${JSON.stringify((seen || (await markers())).slice(0, 500))}` };
    });
  } else {
    result.steps.diagnostics_on_save = diagnostics;
  }
  if (!actions) {
    result.steps.code_action = { skipped: 'the server does not advertise code actions (yet)' };
  } else if (!reviews || !diagnostics.ok) {
    result.steps.code_action = { skipped: 'no diagnostic to fix (diagnostics on save not available or failed)' };
  } else {
    await step(page, 'code_action', async () => {
      // Back in the editor, on the unused import (line 1), open the quick fixes.
      await page.keyboard.press('Control+1');
      await page.keyboard.press('Control+Home');
      const before = await editorText(page);
      await page.keyboard.press('Control+.');
      const items = async () => text(await page.evaluate(() =>
        Array.from(document.querySelectorAll('.action-widget .monaco-list-row.action'))
          .filter((row) => !row.classList.contains('option-disabled'))
          .map((row) => row.getAttribute('aria-label') || row.textContent)
          .join('\n')));
      const offered = await until(items, STEP, 500);
      await shot(page, 'code-actions');
      if (!offered) {
        return { ok: false, detail: 'no code action offered on line 1' };
      }
      await page.keyboard.press('Enter'); // the first (preferred) action
      const changed = await until(async () => (await editorText(page)) !== before, STEP, 500);
      const after = changed ? await settledText(page) : null;
      await shot(page, 'code-action-applied');
      // The action we know: removing the unused import must remove it (and keep the function).
      const first = offered.split('\n')[0];
      const removes = /remove unused import/i.test(first);
      const right = after && (!removes || (!/import os/.test(after) && /def greet/.test(after)));
      return { ok: Boolean(right), detail: `applied ${JSON.stringify(first)} (offered: ${JSON.stringify(offered)}); ` + (after ? `text now: ${JSON.stringify(after.slice(0, 300))}` : 'the text did not change') };
    });
  }

  // -- memlsp: Restart Server ----------------------------------------------------------------
  await step(page, 'restart_server', async () => {
    await page.keyboard.press('Escape');
    await runCommand(page, 'memlsp: Restart Server');
    // Starting (or stopped) first, then ready again.
    const running = /^memlsp: (ready|busy|working)/;
    const left = await until(async () => !running.test(await statusLabel(page)), 20_000, 50);
    const back = await until(async () => {
      const l = await statusLabel(page);
      return running.test(l) ? l : null;
    }, STEP);
    return { ok: Boolean(back), detail: `left ready: ${Boolean(left)}; status bar: ${back || (await statusLabel(page))}` };
  });

  // -- a server path that does not exist: the client restarts and says what is wrong ---------
  await step(page, 'server_not_found', async () => {
    await clearNotifications(page);
    const settings = JSON.parse(fs.readFileSync(config.settingsFile, 'utf8'));
    settings['memlsp.serverPath'] = '/nonexistent/memlsp';
    fs.writeFileSync(config.settingsFile, JSON.stringify(settings, null, 2));
    const label = await until(async () => {
      const l = await statusLabel(page);
      return /not found/.test(l) ? l : null;
    }, 60_000);
    const message = await until(async () => {
      const n = await notifications(page);
      return /nonexistent/.test(n) ? n : null;
    }, 20_000);
    await shot(page, 'server-not-found');
    return { ok: Boolean(label && message), detail: `status bar: ${label || (await statusLabel(page))}; notification: ${JSON.stringify(message || (await notifications(page)))}` };
  });
  save();
}

main()
  .then(() => {
    result.finished = true;
    save();
  })
  .catch((error) => {
    result.error = String(error && error.stack ? error.stack : error);
    log(`fatal: ${result.error}`);
    save();
    process.exitCode = 1;
  });
