#!/usr/bin/env bash
# Install everything the tests need (Debian packages, the venv, the pinned claude CLI),
# then run ruff, mypy --strict and pytest. Arguments go to pytest.
source "$(dirname "$0")/common.sh"
apt_install "${BASE_PACKAGES[@]}" chromium:chromium nix-instantiate:nix-bin redis-server:redis-server
venv_install "[test]"
claude_install
export PATH=$ROOT/.venv/bin:$PATH
echo "== ruff"
ruff check .
ruff format --check --quiet .
echo "== mypy --strict"
mypy
echo "== pytest"
pytest -q "$@"
