#!/usr/bin/env bash
# Installs the Debian packages that run for real, only those missing, and only for what was
# asked: `system-deps.sh nginx prometheus` for the local demo (relay and sidecar stand-in, its
# Prometheus), `chromium` for the console tests, `wrk` for the benchmarks, `promtool` for the
# rules tests (the prometheus package has both); no argument means all (CI, make test).
# The kind backend needs none of them (its tools are Docker, kind, kubectl and Pulumi).
set -euo pipefail
[ $# -eq 0 ] && set -- nginx chromium wrk prometheus promtool
need=()
for tool in "$@"; do
    case "$tool" in
        nginx) package=nginx-light ;;
        chromium) package=chromium ;;
        wrk) package=wrk ;;
        prometheus|promtool) package=prometheus ;;
        *) echo "system-deps.sh: unknown tool $tool (known: nginx chromium wrk prometheus promtool)" >&2; exit 2 ;;
    esac
    command -v "$tool" >/dev/null 2>&1 || [[ " ${need[*]} " == *" $package "* ]] || need+=("$package")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages: ${need[*]}, and no apt-get to install them with" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
