# Shared by scripts/serve.sh and scripts/test.sh: Debian packages, the venv, the pinned
# claude CLI. Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CLAUDE_VERSION=2.1.330
CLAUDE_PREFIX=$ROOT/.cache/claude-code
# command:package pairs both serve.sh and test.sh need; bubblewrap sandboxes every agent
# of the process runtime (hive-c0re refuses to start agents without it).
BASE_PACKAGES=(git:git npm:npm bwrap:bubblewrap)

apt_install() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then missing+=(python3-venv); fi
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "== installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

venv_install() {
    [ -x .venv/bin/python ] || python3 -m venv .venv
    echo "== installing python packages ($1)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$1"
}

claude_install() {
    local bin=$CLAUDE_PREFIX/node_modules/.bin/claude
    if ! { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "^$CLAUDE_VERSION "; }; then
        echo "== installing @anthropic-ai/claude-code@$CLAUDE_VERSION"
        npm install --silent --no-audit --no-fund --prefix "$CLAUDE_PREFIX" \
            "@anthropic-ai/claude-code@$CLAUDE_VERSION" >/dev/null
    fi
    export HIVE_CLAUDE_BIN=$bin
}
