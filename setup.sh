#!/usr/bin/env bash
# Installs everything TransMRSR, its app and its test suite need on a fresh Debian/Ubuntu machine:
# Debian's Chromium (the browser tests drive it; Playwright never downloads one) and the Python requirements
# (CPU PyTorch pinned, the package itself in editable mode). Run it inside a virtual environment if you use one.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian's chromium (for the browser tests)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: no apt-get here; install Chromium at /usr/bin/chromium yourself, or the browser tests fail" >&2
  fi
fi

python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet -r requirements.txt
echo "set-up done: run 'pytest' for the whole suite, 'python app.py' for the app"
