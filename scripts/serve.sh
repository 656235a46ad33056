#!/usr/bin/env bash
# Install hyperhive and run hive-c0re on the embedded default (process runtime, state in
# ~/.local/state/hyperhive). Arguments go to `hive-c0re serve` (see --help).
source "$(dirname "$0")/common.sh"
apt_install "${BASE_PACKAGES[@]}"
venv_install ""
claude_install
echo "== hive-c0re serve (dashboard on ${HIVE_DASHBOARD:-127.0.0.1:7000}; admin: .venv/bin/hive --help)"
exec .venv/bin/hive-c0re serve "$@"
