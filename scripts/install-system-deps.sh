#!/usr/bin/env bash
# Install the speech engines the test fixtures use (espeak-ng, flite, sox), if missing.
set -euo pipefail
missing=()
for tool in espeak-ng flite sox; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
