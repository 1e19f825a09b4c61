#!/usr/bin/env bash
# Prepare a machine for distproxy: a virtualenv in .venv with the package and its
# test/bench extras, and Erlang/OTP (Debian's erlang-nox) when `erl` is missing.
# Sourced by scripts/test and scripts/demo; safe to run again (it only adds what is missing).
set -euo pipefail
DISTPROXY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DISTPROXY_VENV:-$DISTPROXY_ROOT/.venv}"

need_python() {
    if ! command -v python3 >/dev/null 2>&1; then
        echo "distproxy: python3 (3.11 or newer) is required: apt-get install python3 python3-venv" >&2
        exit 2
    fi
    if ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
        echo "distproxy: Python 3.11 or newer is required, found $(python3 --version 2>&1)" >&2
        exit 2
    fi
}

need_erlang() {
    if command -v erl >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "distproxy: erl not found; installing Debian's erlang-nox" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq erlang-nox >/dev/null
    else
        echo "distproxy: erl not found. Install Erlang/OTP 25 or newer, e.g. 'sudo apt-get install erlang-nox'" >&2
        exit 2
    fi
}

need_iproute2() {
    # Only tests/integration/test_netns.py needs `ip` (network namespaces); it skips without.
    if command -v ip >/dev/null 2>&1 || [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
        return 0
    fi
    echo "distproxy: ip not found; installing Debian's iproute2 (for the network-namespace test)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
}

need_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            echo "distproxy: cannot create a virtualenv; install python3-venv (apt-get install python3-venv)" >&2
            exit 2
        fi
    fi
    # Reinstall only when pyproject.toml changed since the last install.
    local stamp="$VENV/.distproxy-installed"
    if [ ! -f "$stamp" ] || [ "$DISTPROXY_ROOT/pyproject.toml" -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q -e "$DISTPROXY_ROOT[test,bench]"
        touch "$stamp"
    fi
}

need_python
need_erlang
need_iproute2
need_venv
