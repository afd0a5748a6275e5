'use strict';
// End-to-end for the signed-in path: an account made through the API (the dev mailer logs the
// verification code), signed in through the page's form, with access tokens so short-lived that
// the server cuts the socket mid-session. The page must refresh its token (rotating the refresh
// token), reconnect as the same user and recover with a REPLAY, so its own strokes stay undoable.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');

const { useStack } = require('./lib/stack');

/** Seconds an access token lives in this cluster: a few reconnects fit in one test. */
const TOKEN_TTL = 8;

describe('accounts: sign in, and survive token expiry mid-session', { timeout: 180000 }, () => {
  const stack = useStack({ label: 'accounts', env: { DRAWBRIDGE_ACCESS_TOKEN_TTL_SECS: String(TOKEN_TTL) } });
  const email = `rita-${Date.now()}@example.test`;
  const password = 'correct horse battery';

  async function api(path, body, token) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${stack.cluster.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    return { status: res.status, body: await res.json().catch(() => ({})) };
  }

  it('signs up through the API and verifies with the logged code', async () => {
    const signup = await api('/api/v1/auth/signup', { name: 'Rita', email, password });
    assert.equal(signup.status, 201, JSON.stringify(signup.body));
    const escaped = email.replace(/[.+]/g, '\\$&');
    const [, otp] = await stack.cluster.findInLogs(new RegExp(`verification code for ${escaped} is (\\d{6})`));
    const verified = await api('/api/v1/auth/verify-otp', { otp }, signup.body.verificationToken);
    assert.equal(verified.status, 200, JSON.stringify(verified.body));
    assert.equal(verified.body.user.name, 'Rita');
  });

  it('the sign-in form rejects a wrong password and accepts the right one', async () => {
    const rita = await stack.open('Rita');
    const { page } = rita;
    await page.goto(`${stack.cluster.url}/`);
    await page.getByText('Sign in with an account instead').click();
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByText('Wrong e-mail or password.').waitFor();

    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByText('Hello, Rita').waitFor();
    await rita.createRoom();
    await rita.screenshot('rita-signed-in');
  });

  it('reconnects as the same user after the server closes an expired session', async (t) => {
    const [rita] = stack.users;
    const { userId, roomId } = await rita.state();
    const stroke = await rita.draw([[200, 300], [600, 300], [1000, 300]]);
    await rita.waitState('stroke acknowledged', (s) => s.pendingIds.length === 0 && s.strokeIds.includes(stroke));

    // A guest watching the same room sees whatever Rita does across her reconnects.
    const gina = await stack.open('Gina');
    await gina.joinAsGuest(await rita.page.locator('#invite-link').inputValue());
    await gina.waitState('Rita\'s stroke', (s) => s.connected && s.strokeIds.includes(stroke));

    // Two expiries: the second refresh only works if the first one's rotated token was kept.
    const handshakes = rita.sockets.filter((h) => h.status === 101).length;
    await rita.waitState('two token renewals', () => rita.sockets.filter((h) => h.status === 101).length >= handshakes + 2, (TOKEN_TTL * 2 + 15) * 1000);
    const s = await rita.waitConnected();
    t.diagnostic(`close codes seen by the page: ${JSON.stringify(s.closeCodes)}`);
    assert.ok(s.closeCodes.filter((c) => c === 1008).length >= 2, 'the server closes expired sessions with 1008');
    assert.equal(s.userId, userId, 'still the same account');
    assert.equal(s.roomId, roomId);
    assert.ok(s.joins.replay >= 2, `recovered with REPLAYs: ${JSON.stringify(s.joins)}`);
    assert.deepEqual(rita.errors, []);

    // Her stroke from before the expiries is still hers to undo.
    await rita.page.keyboard.press('Control+z');
    await gina.waitState('stroke undone', (st) => !st.strokeIds.includes(stroke));
    await rita.waitState('stroke undone', (st) => st.connected && !st.strokeIds.includes(stroke));
  });
});
