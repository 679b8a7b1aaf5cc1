// Formatting of durations, ages and rates for the wallboard. Pure: unit-tested with node --test.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** "850 ms", "12.3 s", "4m 05s", "2h 10m", "3d 4h"; "–" when unknown. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "–";
  if (ms < SECOND) return `${Math.round(ms)} ms`;
  if (ms < MINUTE) return `${(ms / SECOND).toFixed(1)} s`;
  if (ms < HOUR) {
    const minutes = Math.floor(ms / MINUTE);
    const seconds = Math.floor((ms % MINUTE) / SECOND);
    return `${minutes}m ${String(seconds).padStart(2, "0")}s`;
  }
  if (ms < DAY) return `${Math.floor(ms / HOUR)}h ${Math.floor((ms % HOUR) / MINUTE)}m`;
  return `${Math.floor(ms / DAY)}d ${Math.floor((ms % DAY) / HOUR)}h`;
}

/** "just now", "42s ago", "5m ago", "3h ago", "2d ago" for a moment `ms` before now. */
export function formatAgo(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 5 * SECOND) return "just now";
  if (ms < MINUTE) return `${Math.floor(ms / SECOND)}s ago`;
  if (ms < HOUR) return `${Math.floor(ms / MINUTE)}m ago`;
  if (ms < DAY) return `${Math.floor(ms / HOUR)}h ago`;
  return `${Math.floor(ms / DAY)}d ago`;
}

/** A 0..1 rate as "87.5%"; "–" when there is nothing to compute it from. */
export function formatPercent(rate) {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return "–";
  return `${Math.round(rate * 1000) / 10}%`;
}

/** Milliseconds since the epoch of an ISO timestamp, or null. */
export function parseTime(iso) {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

/** The tone of a success rate: good from 90 %, warn from 70 %, bad below; none when unknown. */
export function rateTone(rate) {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return "none";
  if (rate >= 0.9) return "good";
  if (rate >= 0.7) return "warn";
  return "bad";
}
