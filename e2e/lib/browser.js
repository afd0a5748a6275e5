'use strict';
// Debian's Chromium driven by playwright-core. Playwright never downloads a browser here: we always
// pass the system executable, and the flags keep Chromium from reaching for the network on its own.

const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** launch() gives every run a fresh temporary user-data-dir and removes it on close. */
function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60000 });
}

module.exports = { launch };
