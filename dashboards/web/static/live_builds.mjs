// The wallboard's build list: a snapshot from GET /builds plus change sets from the push channel.
// Pure functions over a Map(build_id -> build); unit-tested with node --test.

import { parseTime } from "./format.mjs";

export const ACTIVE_STATUSES = new Set(["QUEUED", "PREPARING", "RUNNING"]);
export const FINAL_STATUSES = new Set(["SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"]);
export const FINISHED_WINDOW_MS = 60 * 60 * 1000;
/** A build that reported nothing for this long leaves the "running" list (its runner vanished). */
export const STALE_RUNNING_MS = 24 * 60 * 60 * 1000;

function build(fields, revision, seenAtMs) {
  return {
    build_id: fields.build_id,
    project: fields.project,
    pipeline: fields.pipeline,
    branch: fields.branch || "",
    status: fields.status,
    revision,
    first_seen_at: fields.first_seen_at || null,
    started_at: fields.started_at || null,
    finished_at: fields.finished_at || null,
    duration_ms: fields.duration_ms ?? null,
    trigger_user: fields.trigger_user || "",
    error_reason: fields.error_reason || "",
    termination_reason: fields.termination_reason || "",
    seen_at_ms: seenAtMs,
  };
}

/** A build from one BuildStatusChange pushed by GET /stream/builds. */
export function fromChange(change, nowMs) {
  return build(change, change.revision, nowMs);
}

/** A build from one row of GET /builds (`version` is the change set's revision). */
export function fromSnapshotRow(row, nowMs) {
  return build(row, row.version, parseTime(row.updated_at) ?? nowMs);
}

/** Keep the newer of what we have and `candidate` (by revision); true when the board changed. */
export function applyBuild(builds, candidate) {
  const known = builds.get(candidate.build_id);
  if (known && known.revision >= candidate.revision) return false;
  builds.set(candidate.build_id, candidate);
  return true;
}

/** Why a build failed, as one line: the error reason, and the termination reason when it adds one. */
export function failureReason(b) {
  const error = b.error_reason || "";
  const termination = b.termination_reason || "";
  if (error && termination && !error.includes(termination)) return `${error} (${termination})`;
  return error || termination;
}

function startedMs(b) {
  return parseTime(b.started_at) ?? parseTime(b.first_seen_at) ?? 0;
}

/** What the wall shows at `nowMs`: running builds (newest start first) and builds finished within
 * `windowMs` (newest first), with counts of the finished ones per status. */
export function boardView(builds, nowMs, windowMs = FINISHED_WINDOW_MS) {
  const running = [];
  const finished = [];
  const counts = { SUCCEEDED: 0, FAILED: 0, CANCELED: 0, SKIPPED: 0 };
  for (const b of builds.values()) {
    if (ACTIVE_STATUSES.has(b.status)) {
      if (nowMs - b.seen_at_ms <= STALE_RUNNING_MS) running.push(b);
    } else if (FINAL_STATUSES.has(b.status)) {
      const at = parseTime(b.finished_at);
      if (at !== null && nowMs - at <= windowMs) {
        finished.push(b);
        counts[b.status] += 1;
      }
    }
  }
  running.sort((a, b) => startedMs(b) - startedMs(a) || a.build_id.localeCompare(b.build_id));
  finished.sort((a, b) => parseTime(b.finished_at) - parseTime(a.finished_at) || a.build_id.localeCompare(b.build_id));
  return { running, finished, counts };
}

/** Forget builds the wall no longer shows, so a wall left on for weeks keeps a bounded map. */
export function prune(builds, nowMs, windowMs = FINISHED_WINDOW_MS) {
  let removed = 0;
  for (const [id, b] of builds) {
    const finishedAt = parseTime(b.finished_at);
    const gone = FINAL_STATUSES.has(b.status)
      ? finishedAt === null || nowMs - finishedAt > windowMs
      : nowMs - b.seen_at_ms > STALE_RUNNING_MS;
    if (gone) {
      builds.delete(id);
      removed += 1;
    }
  }
  return removed;
}
