// Turning API bodies into what the wall's panels and charts show. Pure: unit-tested with node --test.

import { formatDuration, formatPercent, rateTone } from "./format.mjs";

export const WINDOWS = ["1h", "24h", "7d"];
const AUDIT_BUCKETS = ["<1h", "1-4h", "4-24h", "1-3d", ">3d"];

/** A window the page offers, or null. */
export function chosenWindow(raw) {
  return WINDOWS.includes(raw) ? raw : null;
}

/** Seconds between figure reloads from `?refresh=`: 1-3600, default 15. */
export function refreshSeconds(raw) {
  const value = Number(raw);
  if (!raw || !Number.isFinite(value)) return 15;
  return Math.min(3600, Math.max(1, value));
}

function pipelineKey(row) {
  return `${row.project}/${row.pipeline}`;
}

/** Success-rate chart items from GET /stats/pipelines rows, worst pipeline first. */
export function successRateItems(rows) {
  return [...rows]
    .sort((a, b) => (a.success_rate ?? 2) - (b.success_rate ?? 2) || pipelineKey(a).localeCompare(pipelineKey(b)))
    .map((row) => ({
      key: pipelineKey(row),
      label: pipelineKey(row),
      valueLabel: `${formatPercent(row.success_rate)}  (${row.succeeded}/${row.finished})`,
      segments: [{
        value: row.success_rate ?? 0,
        tone: rateTone(row.success_rate),
        title: `${pipelineKey(row)}: ${row.succeeded} succeeded, ${row.failed} failed, ${row.canceled} canceled`,
      }],
    }));
}

/** Duration chart items (p50 inside p95) from GET /stats/pipelines rows, slowest p95 first. */
export function durationItems(rows) {
  return rows
    .filter((row) => row.duration_p50_ms !== null && row.duration_p50_ms !== undefined)
    .sort((a, b) => (b.duration_p95_ms ?? 0) - (a.duration_p95_ms ?? 0) || pipelineKey(a).localeCompare(pipelineKey(b)))
    .map((row) => ({
      key: pipelineKey(row),
      label: pipelineKey(row),
      valueLabel: `p50 ${formatDuration(row.duration_p50_ms)} · p95 ${formatDuration(row.duration_p95_ms)}`,
      segments: [
        { value: row.duration_p95_ms ?? row.duration_p50_ms, tone: "p95", title: `p95 ${formatDuration(row.duration_p95_ms)}` },
        { value: row.duration_p50_ms, tone: "p50", title: `p50 ${formatDuration(row.duration_p50_ms)}` },
      ],
    }));
}

/** Open audits per age bucket (all projects), in bucket order, from GET /stats/audits. */
export function auditAgeItems(body) {
  const totals = new Map(AUDIT_BUCKETS.map((bucket) => [bucket, 0]));
  for (const row of body?.open_by_age ?? []) {
    totals.set(row.bucket, (totals.get(row.bucket) ?? 0) + row.open_audits);
  }
  return [...totals].map(([bucket, open]) => ({
    key: bucket,
    label: bucket,
    valueLabel: String(open),
    segments: [{ value: open, tone: bucket === "1-3d" || bucket === ">3d" ? "bad" : "neutral", title: `${open} open ${bucket}` }],
  }));
}

/** Rejected retry decisions per (action, reason), most first, and the total of all decisions. */
export function retryRejections(body) {
  const grouped = new Map();
  let total = 0;
  for (const row of body?.decisions ?? []) {
    total += row.decisions;
    if (row.eligible) continue;
    const key = `${row.action}|${row.reason}`;
    const known = grouped.get(key) ?? { action: row.action, reason: row.reason, decisions: 0, builds: 0 };
    known.decisions += row.decisions;
    known.builds += row.builds;
    grouped.set(key, known);
  }
  const rejections = [...grouped.values()].sort((a, b) => b.decisions - a.decisions || a.reason.localeCompare(b.reason));
  return { rejections, total };
}

/** GET /gates answers a list or {"gates": [...]}; anything else means no gates. */
export function gateList(body) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body.gates)) return body.gates;
  return [];
}

/** One line per failing rule of a gate decision. */
export function gateFailures(gate) {
  return (gate.failing ?? []).map((rule) =>
    rule.message || `${rule.rule}: measured ${rule.measured}, threshold ${rule.threshold}`,
  );
}
