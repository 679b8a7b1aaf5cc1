import assert from "node:assert/strict";
import { test } from "node:test";

import { formatAgo, formatDuration, formatPercent, rateTone } from "../static/format.mjs";
import {
  auditAgeItems, chosenWindow, durationItems, gateFailures, gateList, refreshSeconds, retryRejections, successRateItems,
} from "../static/panels.mjs";
import { barChartLayout, niceMax } from "../static/svg_charts.mjs";

const row = (pipeline, rate, p50, p95) => ({
  project: "payments", pipeline, finished: 10, succeeded: Math.round((rate ?? 0) * 10), failed: 1, canceled: 0,
  success_rate: rate, duration_p50_ms: p50, duration_p95_ms: p95,
});

test("durations, ages and rates read naturally", () => {
  assert.equal(formatDuration(850), "850 ms");
  assert.equal(formatDuration(12_340), "12.3 s");
  assert.equal(formatDuration(245_000), "4m 05s");
  assert.equal(formatDuration(7_800_000), "2h 10m");
  assert.equal(formatDuration(null), "–");
  assert.equal(formatAgo(2_000), "just now");
  assert.equal(formatAgo(300_000), "5m ago");
  assert.equal(formatPercent(0.875), "87.5%");
  assert.equal(formatPercent(null), "–");
  assert.deepEqual([0.95, 0.8, 0.2, null].map(rateTone), ["good", "warn", "bad", "none"]);
});

test("only the offered windows and a bounded refresh are accepted from the URL", () => {
  assert.equal(chosenWindow("7d"), "7d");
  assert.equal(chosenWindow("400d"), null);
  assert.equal(refreshSeconds(null), 15);
  assert.equal(refreshSeconds("0"), 1);
  assert.equal(refreshSeconds("abc"), 15);
  assert.equal(refreshSeconds("99999"), 3600);
});

test("success-rate items put the worst pipeline first; duration items the slowest p95", () => {
  const rows = [row("fast", 0.95, 1000, 2000), row("flaky", 0.5, 5000, 60_000), row("unknown", null, null, null)];
  assert.deepEqual(successRateItems(rows).map((i) => i.key), ["payments/flaky", "payments/fast", "payments/unknown"]);
  assert.deepEqual(durationItems(rows).map((i) => i.key), ["payments/flaky", "payments/fast"]);
  assert.equal(successRateItems(rows)[0].segments[0].tone, "bad");
});

test("the bar layout scales to the axis maximum and draws p50 inside p95", () => {
  assert.deepEqual([0.3, 1, 7, 12, 4500].map(niceMax), [0.5, 1, 10, 20, 5000]);
  const layout = barChartLayout(durationItems([row("a", 1, 1000, 4000), row("b", 1, 500, 1000)]), {
    width: 600, labelWidth: 100, valueWidth: 100,
  });
  assert.equal(layout.axisMax, 5000);
  assert.equal(layout.bars.length, 2);
  const [p95, p50] = layout.bars[0].segments;
  assert.equal(p95.tone, "p95");
  assert.ok(Math.abs(p95.width - 320) < 1e-9, `p95 width ${p95.width}`);
  assert.ok(Math.abs(p50.width - 80) < 1e-9, `p50 width ${p50.width}`);
  assert.equal(layout.bars[1].y, 26);
});

test("audit ages sum over projects in bucket order; old buckets are marked", () => {
  const items = auditAgeItems({ open_by_age: [
    { project: "a", bucket: "1-3d", open_audits: 2 }, { project: "b", bucket: "1-3d", open_audits: 1 },
    { project: "a", bucket: "<1h", open_audits: 4 },
  ] });
  assert.deepEqual(items.map((i) => [i.key, i.valueLabel]), [["<1h", "4"], ["1-4h", "0"], ["4-24h", "0"], ["1-3d", "3"], [">3d", "0"]]);
  assert.equal(items[3].segments[0].tone, "bad");
});

test("retry rejections are grouped per action and reason, accepted decisions only count in the total", () => {
  const { rejections, total } = retryRejections({ decisions: [
    { action: "check", eligible: true, reason: "ELIGIBLE", decisions: 5, builds: 5 },
    { action: "retry", eligible: false, reason: "OUTSIDE_RETENTION", decisions: 3, builds: 2 },
    { action: "check", eligible: false, reason: "NOT_FINAL", decisions: 1, builds: 1 },
  ] });
  assert.equal(total, 9);
  assert.deepEqual(rejections.map((r) => [r.reason, r.decisions]), [["OUTSIDE_RETENTION", 3], ["NOT_FINAL", 1]]);
});

test("gates come as a list or wrapped, and failing rules read as messages", () => {
  const gate = { gate: "coverage", result: "FAIL", failing: [
    { rule: "coverage", measured: 71, threshold: 80, message: "" }, { rule: "p95", measured: 9, threshold: 5, message: "too slow" },
  ] };
  assert.deepEqual(gateList([gate]), [gate]);
  assert.deepEqual(gateList({ gates: [gate] }), [gate]);
  assert.deepEqual(gateList({ error: "x" }), []);
  assert.deepEqual(gateFailures(gate), ["coverage: measured 71, threshold 80", "too slow"]);
});
