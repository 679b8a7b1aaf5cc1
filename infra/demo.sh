#!/usr/bin/env bash
# cipulse's main job on one machine: Kafka broker, worker (build-state agent, ClickHouse sink
# on the embedded engine, REST API) and a demo feed of realistic builds. Ctrl-C stops it all.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash infra/bootstrap.sh

export CIPULSE_WEB_PORT="${CIPULSE_WEB_PORT:-6066}"
# Demo-sized review thresholds, so stuck reviews and lost record syncs show up within minutes.
export CIPULSE_AUDIT_STUCK_AFTER_SECONDS="${CIPULSE_AUDIT_STUCK_AFTER_SECONDS:-120}"
export CIPULSE_AUDIT_SYNC_GRACE_SECONDS="${CIPULSE_AUDIT_SYNC_GRACE_SECONDS:-20}"
# Failures, recoveries and stuck reviews, grouped per project, written to the worker log.
export CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE="${CIPULSE_NOTIFY_SUBSCRIPTIONS_FILE:-$repo/infra/demo-subscriptions.yaml}"
# Local demo only: lets `cipulse retry request` and the repair API be tried; set your own elsewhere.
export CIPULSE_ADMIN_TOKEN="${CIPULSE_ADMIN_TOKEN:-demo-admin-token}"
api="http://127.0.0.1:${CIPULSE_WEB_PORT}"
mkdir -p .data
worker_pid=""
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping ..."
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  if [ "${CIPULSE_DEMO_KEEP_BROKER:-0}" != "1" ]; then bash infra/kafka.sh stop; fi
}
trap cleanup INT TERM EXIT

bash infra/kafka.sh start
.venv/bin/cipulse topics create
echo "demo: starting worker (log: .data/worker.log)"
.venv/bin/cipulse worker >> .data/worker.log 2>&1 &
worker_pid=$!
for _ in $(seq 1 120); do
  if curl -fsS "$api/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$worker_pid" 2>/dev/null; then
    echo "demo: worker exited; last lines of .data/worker.log:" >&2; tail -n 40 .data/worker.log >&2; exit 1
  fi
  sleep 1
done
curl -fsS "$api/ready" >/dev/null || { echo "demo: worker not ready after 120 s" >&2; tail -n 40 .data/worker.log >&2; exit 1; }
cat <<MSG
demo: cipulse is running
  API          $api/openapi.json   (e.g. $api/stats/pipelines?window=1h)
  metrics      $api/metrics
  a build      .venv/bin/cipulse build status <build_id>
  stats        .venv/bin/cipulse stats --window 1h
  reviews      $api/audits?stuck=true   and  $api/stats/audits?window=1h
  alerts       topic cipulse.audit-alerts (stuck reviews after 120 s, lost record syncs repaired after 20 s)
  notifications grep notification .data/worker.log   and  $api/notifications/health
demo: starting the demo feed (Ctrl-C stops everything)
MSG
.venv/bin/cipulse demo-feed --rate "${CIPULSE_DEMO_RATE:-2}" --speed "${CIPULSE_DEMO_SPEED:-20}"
