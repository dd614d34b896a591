// The Chromium that play.mjs plays in, started the same way whether one run starts its own or a test worker
// shares one (browser_server.mjs).
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required'];
