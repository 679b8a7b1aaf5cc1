import assert from "node:assert/strict";
import { test } from "node:test";

import {
  applyBuild, boardView, failureReason, fromChange, fromSnapshotRow, prune, STALE_RUNNING_MS,
} from "../static/live_builds.mjs";

const NOW = Date.parse("2026-11-25T12:00:00Z");
const iso = (msBefore) => new Date(NOW - msBefore).toISOString();
const MIN = 60_000;

function change(build_id, revision, status, extra = {}) {
  return {
    build_id, revision, status, project: "payments", pipeline: "deploy", branch: "main",
    first_seen_at: iso(10 * MIN), started_at: iso(9 * MIN), ...extra,
  };
}

test("a pushed change replaces an older snapshot row, never the other way round", () => {
  const builds = new Map();
  assert.equal(applyBuild(builds, fromSnapshotRow({ ...change("b1", 3, "RUNNING"), version: 3, updated_at: iso(MIN) }, NOW)), true);
  assert.equal(applyBuild(builds, fromChange(change("b1", 5, "FAILED", { finished_at: iso(0) }), NOW)), true);
  assert.equal(applyBuild(builds, fromSnapshotRow({ ...change("b1", 4, "RUNNING"), version: 4 }, NOW)), false);
  assert.equal(applyBuild(builds, fromChange(change("b1", 5, "FAILED"), NOW)), false, "redelivered change");
  assert.equal(builds.get("b1").status, "FAILED");
});

test("the board lists running builds and builds finished within the hour, newest first", () => {
  const builds = new Map();
  applyBuild(builds, fromChange(change("old-run", 2, "RUNNING", { started_at: iso(30 * MIN) }), NOW));
  applyBuild(builds, fromChange(change("new-run", 2, "RUNNING", { started_at: iso(1 * MIN) }), NOW));
  applyBuild(builds, fromChange(change("ok", 3, "SUCCEEDED", { finished_at: iso(5 * MIN) }), NOW));
  applyBuild(builds, fromChange(change("bad", 3, "FAILED", { finished_at: iso(2 * MIN) }), NOW));
  applyBuild(builds, fromChange(change("ancient", 3, "FAILED", { finished_at: iso(61 * MIN) }), NOW));
  const view = boardView(builds, NOW);
  assert.deepEqual(view.running.map((b) => b.build_id), ["new-run", "old-run"]);
  assert.deepEqual(view.finished.map((b) => b.build_id), ["bad", "ok"]);
  assert.equal(view.counts.FAILED, 1);
  assert.equal(view.counts.SUCCEEDED, 1);
});

test("pruning forgets finished builds past the hour and running builds silent for a day", () => {
  const builds = new Map();
  applyBuild(builds, fromChange(change("ancient", 3, "FAILED", { finished_at: iso(61 * MIN) }), NOW));
  applyBuild(builds, fromChange(change("silent", 1, "RUNNING"), NOW - STALE_RUNNING_MS - 1));
  applyBuild(builds, fromChange(change("recent", 3, "SUCCEEDED", { finished_at: iso(MIN) }), NOW));
  assert.equal(prune(builds, NOW), 2);
  assert.deepEqual([...builds.keys()], ["recent"]);
});

test("the failure reason names the termination only when the error does not already", () => {
  assert.equal(failureReason({ error_reason: "tests failed", termination_reason: "" }), "tests failed");
  assert.equal(failureReason({ error_reason: "exit 137", termination_reason: "OOMKilled" }), "exit 137 (OOMKilled)");
  assert.equal(failureReason({ error_reason: "pod OOMKilled", termination_reason: "OOMKilled" }), "pod OOMKilled");
  assert.equal(failureReason({ error_reason: "", termination_reason: "Evicted" }), "Evicted");
});
