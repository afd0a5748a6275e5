'use strict';
// What every browser suite needs: a cluster (nginx, two instances, Redis), one browser, and the
// users it opens, started before the suite and stopped after it, whatever failed in between.

const { after, before } = require('node:test');

const { Cluster } = require('./cluster');
const { launch } = require('./browser');
const { User } = require('./pages');

/** Registers the suite's before/after hooks; the returned stack is filled in by `before`. */
function useStack(clusterOptions) {
  const stack = {
    cluster: null,
    browser: null,
    /** The users still open. */
    users: [],
    /** Every user opened, closed ones included: their pages' errors still count. */
    everyone: [],
    /** A new user (browser context) that `after` closes unless the test forgets it first. */
    async open(name, contextOptions = {}) {
      const user = await User.open(stack.browser, name, contextOptions);
      stack.users.push(user);
      stack.everyone.push(user);
      return user;
    },
    /** Closes a user now and forgets it. */
    async close(user) {
      await user.close();
      stack.users.splice(stack.users.indexOf(user), 1);
    },
  };
  before(async () => {
    // Assigned before start() so that `after` stops whatever a failed start left running.
    stack.cluster = new Cluster(clusterOptions);
    await stack.cluster.start();
    stack.browser = await launch();
  });
  after(async () => {
    for (const u of stack.users) await u.close();
    if (stack.browser) await stack.browser.close().catch(() => {});
    if (stack.cluster) await stack.cluster.stop();
  });
  return stack;
}

module.exports = { useStack };
