#!/usr/bin/env bash
# Make sure a headless Chromium is available for the report's browser test.
#
# Installs Debian's `chromium` package with apt-get when no chromium binary is found
# (Playwright's own browser download cannot be used here: only the package registries
# are reachable). Needs root for the install, as in CI; without it, it says so and fails.
#
# Usage:   bash scripts/setup_browser.sh
# Output:  on success the LAST line of stdout is the chromium executable's path.
# Exit:    non-zero with an "ERROR:" line on stderr when chromium cannot be had.
#
# Environment overrides:
#   LIONLOOP_CHROMIUM   use this executable instead of looking for one
#
# Idempotent: when chromium is already installed it only prints its path.
set -Eeuo pipefail

find_chromium() {
    if [[ -n "${LIONLOOP_CHROMIUM:-}" ]]; then
        [[ -x "$LIONLOOP_CHROMIUM" ]] && { echo "$LIONLOOP_CHROMIUM"; return 0; }
        return 1
    fi
    local c
    for c in chromium chromium-browser; do
        if command -v "$c" >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

if path="$(find_chromium)"; then
    echo "$path"
    exit 0
fi

if [[ -n "${LIONLOOP_CHROMIUM:-}" ]]; then
    echo "ERROR: LIONLOOP_CHROMIUM=$LIONLOOP_CHROMIUM is not an executable" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ERROR: no chromium found and no apt-get to install it; install Chromium and set LIONLOOP_CHROMIUM" >&2
    exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "ERROR: installing chromium needs root (apt-get install chromium)" >&2
        exit 1
    fi
fi

echo "installing Debian's chromium (apt-get) ..." >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2
# fonts-liberation: metric-compatible fonts, so screenshots do not fall back to boxes.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-liberation >&2

if path="$(find_chromium)"; then
    echo "$path"
    exit 0
fi
echo "ERROR: apt-get finished but no chromium executable is on PATH" >&2
exit 1
