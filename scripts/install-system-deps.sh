#!/usr/bin/env bash
# Installs the Debian tools Pulse uses when any is missing: Java 17 and Maven (to resolve and run
# Kafka and Cassandra from Maven Central), ffmpeg/ffprobe (video), fpcalc + libchromaprint
# (audio fingerprints), sox, Tesseract with its English model (OCR of text in images and video
# keyframes, Content Guard), Chromium (the web pages' browser tests drive it with Playwright),
# wrk (the load generator of `pulse bench api`).
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v java   >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn    >/dev/null || need+=(maven)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v fpcalc >/dev/null || need+=(libchromaprint-tools)
ldconfig -p 2>/dev/null | grep -q libchromaprint.so || need+=(libchromaprint1)
command -v sox    >/dev/null || need+=(sox)
command -v tesseract >/dev/null || need+=(tesseract-ocr)
tesseract --list-langs 2>/dev/null | grep -qx eng || need+=(tesseract-ocr-eng)
command -v chromium >/dev/null || need+=(chromium)
command -v wrk    >/dev/null || need+=(wrk)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${need[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "error: need root to install ${need[*]} (apt-get); install them and re-run" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
