#!/usr/bin/env bash
# Install the system pieces the site build and the browser tests need, only when missing.
#
#   bash tools/install_system_deps.sh                 chromium + bubblewrap + postgresql (apt) and MathJax (npm)
#   bash tools/install_system_deps.sh --mathjax-only  only MathJax (what `python -m tools.site` and
#                                                     `python -m tools.formgrader` need)
#
# Idempotent and quiet when everything is present. Safe to run as root on a fresh Debian
# machine with no browser: it uses Debian's own `chromium` package (never a browser download
# by Playwright) and npm's `mathjax@3`, which is served from the site itself, because no CDN is
# reachable on the course machines or in many classrooms.
#
# MathJax goes into .cache/mathjax/ (ignored by git); tools/site.py copies the few files a page
# needs from there into the built site. MathJax 2 goes into .cache/mathjax2/: nbgrader's
# formgrader pages are written for MathJax 2 (their scripts call MathJax.Hub, which MathJax 3
# does not have), and tools/formgrader.py serves it to them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MATHJAX_PREFIX="$ROOT/.cache/mathjax"
MATHJAX_MARK="$MATHJAX_PREFIX/node_modules/mathjax/es5/tex-mml-chtml.js"
MATHJAX_VERSION="3.2.2"
MATHJAX2_PREFIX="$ROOT/.cache/mathjax2"
MATHJAX2_MARK="$MATHJAX2_PREFIX/node_modules/mathjax/MathJax.js"
MATHJAX2_VERSION="2.7.9"

mathjax_only=0
for arg in "$@"; do
  case "$arg" in
    --mathjax-only) mathjax_only=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install_system_deps.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

apt_updated=0
apt_install() {
  # apt_install PACKAGE... : install Debian packages (apt-get update once per run).
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps.sh: apt-get not found; install these by hand: $*" >&2
    exit 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    echo "install_system_deps.sh: apt-get update"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  echo "install_system_deps.sh: apt-get install $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ "$mathjax_only" -eq 0 ]; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
  # Fonts so that screenshots show text (a bare machine may have none).
  [ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
  # PostgreSQL server binaries for the parallel autograder's gradebook (tools/classroom.py
  # starts its own throwaway cluster; Debian keeps pg_ctl off PATH, under /usr/lib/postgresql).
  if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    missing+=(postgresql)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
fi

npm_install_mathjax() {
  # npm_install_mathjax PREFIX VERSION MARK : npm's mathjax@VERSION into PREFIX unless MARK exists.
  local prefix="$1" version="$2" mark="$3"
  [ -f "$mark" ] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  mkdir -p "$prefix"
  echo "install_system_deps.sh: npm install mathjax@$version into ${prefix#"$ROOT"/}"
  npm install --prefix "$prefix" --no-audit --no-fund --no-save --silent \
    "mathjax@$version" >/dev/null
  if [ ! -f "$mark" ]; then
    echo "install_system_deps.sh: npm finished but $mark is missing" >&2
    exit 1
  fi
}

npm_install_mathjax "$MATHJAX_PREFIX" "$MATHJAX_VERSION" "$MATHJAX_MARK"
npm_install_mathjax "$MATHJAX2_PREFIX" "$MATHJAX2_VERSION" "$MATHJAX2_MARK"
