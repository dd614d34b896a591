// The browser a benchmark measures with shares the benchmark's scheduling standing.
//
// Playwright starts Chromium detached (a session of its own), and on kernels with autogroup scheduling a
// new session is a new scheduling group at nice 0. A bench that raised its own group's priority
// (`echo -10 > /proc/self/autogroup`, see sidecast.core.sched) then measured with a browser starved by the
// rest of the machine: on 2026-12-01 a loaded run played 60 s of video in 94 s. This gives the groups of
// node's direct children (Chromium's browser process; its renderers are in its session) node's group nice.
// Best effort: no autogroup file, or no permission, leaves them as they are.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

function groupNice(pid) {
  try {
    const m = /nice\s+(-?\d+)/.exec(readFileSync(`/proc/${pid}/autogroup`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export function shareStanding() {
  const mine = groupNice('self');
  if (mine === null) return 0;
  let moved = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try { stat = readFileSync(`/proc/${name}/stat`, 'utf8'); } catch { continue; }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid !== process.pid || groupNice(name) === mine) continue;
    try { writeFileSync(`/proc/${name}/autogroup`, String(mine)); moved += 1; } catch { /* not ours to change */ }
  }
  return moved;
}
