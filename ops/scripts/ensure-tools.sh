#!/usr/bin/env bash
# Install the Debian tools the tests need: vcfanno (+ its example data), bcftools, tabix/bgzip
# (annotation comparisons), chromium + chromium-driver (browser tests of the web pages) and
# prometheus (promtool rule tests, a real Prometheus scraping a live stack).
# Idempotent; needs root (or sudo) to install.
set -euo pipefail

missing=()
command -v vcfanno >/dev/null 2>&1 || missing+=(vcfanno)
command -v bcftools >/dev/null 2>&1 || missing+=(bcftools)
command -v bgzip >/dev/null 2>&1 && command -v tabix >/dev/null 2>&1 || missing+=(tabix)
[ -d /usr/share/doc/vcfanno-examples/tests ] || missing+=(vcfanno-examples)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "ensure-tools: missing ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2
  echo "ensure-tools: tests that compare against vcfanno/bcftools will be skipped;" \
       "the browser and alert tests will fail until chromium, chromium-driver and prometheus are installed" >&2
  exit 0
fi
echo "ensure-tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
