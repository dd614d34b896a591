#!/usr/bin/env node
// One headless Chromium that a test worker's play.mjs runs connect to, each with a fresh browser context of
// its own (harness.py `sharing_one_browser`): a Chromium start cost each run ~1-2 s of CPU and of wall time.
//
// Usage:  node browser_server.mjs '{"chromium": "/usr/bin/chromium"}'
// Prints ONE JSON line, {"wsEndpoint": "ws://..."} (or {"error": "..."}), then serves until its stdin
// closes (the harness closes it, or exits), and closes the browser.

import { CHROMIUM_ARGS } from './chromium.mjs';
import { shareStanding } from './standing.mjs';

async function main() {
  const opts = JSON.parse(process.argv[2] || '{}');
  let server;
  try {
    const { chromium } = await import('playwright-core');
    server = await chromium.launchServer({
      executablePath: opts.chromium || process.env.SIDECAST_CHROMIUM || '/usr/bin/chromium',
      headless: true, args: CHROMIUM_ARGS, timeout: 60000,
    });
  } catch (err) {
    process.stdout.write(JSON.stringify({ error: String(err && err.message || err).split('\n')[0] }) + '\n');
    process.exit(2);
  }
  shareStanding();  // the browser gets node's scheduling standing, as in play.mjs
  const stop = async () => {
    await server.close().catch(() => {});
    process.exit(0);
  };
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
  process.stdout.write(JSON.stringify({ wsEndpoint: server.wsEndpoint() }) + '\n');
}

main();
