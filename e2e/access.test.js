'use strict';
// End-to-end for PROTOCOL.md §6 in real browsers, through nginx onto two instances: an owner who
// signed up through the page (with the e-mailed code) shares a board with an account read-only;
// the viewer's page shows a badge, hides the tools and cannot draw; the owner makes them an editor
// in the share dialog and they draw at once, without reloading. Then the viewer's lobby lists the
// board under "My boards" and their profile shows the day's changes on the heatmap.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');

const { useStack } = require('./lib/stack');

const escape = (s) => s.replace(/[.+]/g, '\\$&');

describe('access: share read-only, then make an editor, live', { timeout: 180000 }, () => {
  const stack = useStack({ label: 'access', env: { DRAWBRIDGE_ACTIVITY_FLUSH_SECS: '1' } });
  const stamp = Date.now();
  const oliveMail = `olive-${stamp}@example.test`;
  const veraMail = `vera-${stamp}@example.test`;
  const password = 'correct horse battery';
  const ctx = {};

  async function api(path, body, token) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${stack.cluster.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    return { status: res.status, body: await res.json().catch(() => ({})) };
  }

  async function code(email) {
    const [, otp] = await stack.cluster.findInLogs(new RegExp(`verification code for ${escape(email)} is (\\d{6})`));
    return otp;
  }

  it('an owner signs up through the page with the e-mailed code and names a board', async () => {
    const olive = await stack.open('Olive');
    const { page } = olive;
    await page.goto(`${stack.cluster.url}/`);
    await page.getByText('Create an account').click();
    await page.locator('#signup-name').fill('Olive');
    await page.locator('#signup-email').fill(oliveMail);
    await page.locator('#signup-password').fill(password);
    await page.getByRole('button', { name: 'Sign up', exact: true }).click();
    await page.getByLabel('Code').fill(await code(oliveMail));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByText('Hello, Olive').waitFor();
    ctx.invite = await olive.createRoom();
    const s = await olive.waitState('owner', (st) => st.role === 'owner');
    ctx.roomId = s.roomId;
    await page.locator('#room-name').fill('Roadmap');
    await page.locator('#room-name').press('Enter');
    await olive.waitState('named', (st) => st.roomName === 'Roadmap');
    ctx.olive = olive;
  });

  it('shares it with an account, read-only: the viewer cannot draw', async () => {
    const signup = await api('/api/v1/auth/signup', { name: 'Vera', email: veraMail, password });
    assert.equal(signup.status, 201, JSON.stringify(signup.body));
    const verified = await api('/api/v1/auth/verify-otp', { otp: await code(veraMail) }, signup.body.verificationToken);
    assert.equal(verified.status, 200, JSON.stringify(verified.body));
    ctx.veraId = verified.body.user.userId;

    // The owner: members only, Vera as a viewer.
    const { page } = ctx.olive;
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Share this board' });
    await dialog.locator('#share-link').selectOption('off');
    await dialog.locator('#share-email').fill(veraMail);
    await dialog.locator('#share-role').selectOption('viewer');
    await dialog.getByRole('button', { name: 'Add', exact: true }).click();
    await dialog.locator(`#share-members li[data-user-id="${ctx.veraId}"]`).waitFor();

    const vera = await stack.open('Vera');
    ctx.vera = vera;
    await vera.page.goto(ctx.invite);
    await vera.page.getByText('Sign in with an account instead').click();
    await vera.page.getByLabel('E-mail').fill(veraMail);
    await vera.page.getByLabel('Password').fill(password);
    await vera.page.getByRole('button', { name: 'Sign in', exact: true }).click();
    const s = await vera.waitState('joined as a viewer', (st) => st.connected && st.role === 'viewer');
    assert.equal(s.readOnly, true);
    assert.equal(s.roomName, 'Roadmap');
    assert.ok(await vera.page.locator('#readonly-badge').isVisible(), 'the view-only badge shows');
    assert.ok(!(await vera.page.locator('#tools').isVisible()), 'the tools are hidden');
    assert.ok(!(await vera.page.locator('#undo').isVisible()), 'undo is hidden');
    await vera.page.evaluate(() => { window.notReloaded = true; });

    // A drag over the board pans; nothing is drawn, nothing is sent.
    const before = await vera.state();
    await vera.drag([300, 300], [700, 420]);
    await vera.page.keyboard.press('p');
    await vera.drag([300, 500], [700, 620]);
    const after = await vera.state();
    assert.deepEqual(after.pendingIds, []);
    assert.deepEqual(after.strokeIds, before.strokeIds);
    assert.equal(after.elementCount, before.elementCount);
    assert.equal(vera.sentOf('CANVAS_UPDATE').length + vera.sentOf('ELEMENTS_ADD').length, 0, 'a viewer sends no op');
    await vera.screenshot('vera-viewer');
  });

  it('the owner makes the viewer an editor and they draw without reloading', async () => {
    const { page } = ctx.olive;
    await page.locator(`#share-members li[data-user-id="${ctx.veraId}"] select`).selectOption('editor');
    const { vera } = ctx;
    await vera.waitState('editor, live', (st) => st.role === 'editor' && !st.readOnly);
    assert.ok(await vera.page.evaluate(() => window.notReloaded === true), 'the page was not reloaded');
    assert.ok(!(await vera.page.locator('#readonly-badge').isVisible()));
    assert.ok(await vera.page.locator('#tools').isVisible(), 'the tools are back');
    await vera.tool('pen');
    const stroke = await vera.draw([[300, 300], [500, 360], [700, 300]]);
    await vera.waitState('stroke acknowledged', (st) => st.pendingIds.length === 0 && st.strokeIds.includes(stroke));
    await ctx.olive.waitState('Vera\'s stroke', (st) => st.strokeIds.includes(stroke));
    await page.getByRole('button', { name: 'Done' }).click();
    await vera.screenshot('vera-editor');
    assert.deepEqual(vera.errors, []);
    assert.deepEqual(ctx.olive.errors, []);
  });

  it('lists the board under My boards and the day on the heatmap', async () => {
    const { vera } = ctx;
    await vera.page.getByRole('button', { name: 'Leave room' }).click();
    await vera.page.locator('#my-rooms li', { hasText: 'Roadmap' }).waitFor();
    await vera.page.getByRole('button', { name: 'Your activity' }).click();
    const today = new Date().toISOString().slice(0, 10);
    const cell = vera.page.locator(`#heatmap .day[data-date="${today}"]`);
    const deadline = Date.now() + 15000;
    for (;;) {
      await cell.waitFor();
      if (Number(await cell.getAttribute('data-count')) >= 1) break;
      assert.ok(Date.now() < deadline, 'today shows on the heatmap');
      await vera.page.getByRole('button', { name: 'Previous year' }).click();
      await vera.page.getByRole('button', { name: 'Next year' }).click();
    }
    assert.match(await vera.page.locator('#activity-summary').textContent(), /current streak 1 day/);
    await vera.screenshot('vera-activity');
  });
});
