#!/usr/bin/env bash
# Install what cipulse needs on a fresh machine: Python deps in .venv, Kafka jars in .cache.
# Idempotent and quick when nothing changed (re-installs only when pyproject.toml changes).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

python_bin=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    python_bin="$candidate"; break
  fi
done
if [ -z "$python_bin" ]; then
  echo "bootstrap: cipulse needs Python 3.11 or newer on PATH" >&2; exit 1
fi

stamp=".venv/.cipulse-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $("$python_bin" --version)"
  "$python_bin" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "bootstrap: installing Python dependencies into .venv (first time: a few minutes, chdb is ~180 MB)"
  mkdir -p .cache
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[test]'; } \
       > .cache/pip-install.log 2>&1; then
    tail -n 40 .cache/pip-install.log >&2
    echo "bootstrap: pip install failed (full log: .cache/pip-install.log)" >&2; exit 1
  fi
  echo "$want" > "$stamp"
else
  echo "bootstrap: Python dependencies up to date"
fi
bash infra/kafka.sh fetch

# Byte-code for cipulse's own modules, so every worker, engine process and test run reads it
# instead of compiling ~300 modules again (about 0.6 s per process start, with PYTHONDONTWRITEBYTECODE
# set as on CI machines). Stale files are harmless: Python checks each source's mtime.
.venv/bin/python -m compileall -q streams schemas sinks benchmarks tests > /dev/null

# The dashboard's browser test drives Debian's chromium (Playwright cannot download a browser here).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: installing Debian's chromium for the dashboard's browser test (about 30 s)"
  mkdir -p .cache
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
       > .cache/apt-chromium.log 2>&1; then
    tail -n 20 .cache/apt-chromium.log >&2
    echo "bootstrap: could not install chromium (full log: .cache/apt-chromium.log); the browser test will fail" >&2
  fi
fi
