#!/bin/sh
# Installs the system (non-Python) tools the test suite needs, only where they are missing:
#   prometheus, promtool   Debian package `prometheus` (tests/e2e/test_e2e_prometheus.py, test_e2e_deploy.py)
#   systemd-analyze        Debian package `systemd` (test_e2e_deploy.py verifies deploy/fpgacspd.service)
#   systemd-sysusers       Debian package `systemd` (test_e2e_deploy.py dry-runs deploy/fpgacspd.sysusers)
#   verilator              Debian package `verilator` (tests/test_regmap.py lints the generated RTL register block)
#   ccache                 Debian package `ccache` (fpga_bitstream/tb/sim.py: each Verilator build of a testbench
#                          compiles the same runtime; cached, a build takes seconds instead of ~30 s)
# Idempotent: a second run installs nothing. Needs root for apt-get; uses sudo when not root.
# The packaged Prometheus service is NOT started (the tests run their own Prometheus on a free port); set
# FPGACSP_START_SERVICES=1 to let the package start its service as usual.
set -eu

missing=""
need() {  # need COMMAND PACKAGE
    if command -v "$1" >/dev/null 2>&1; then
        echo "install-system-deps: $1 found at $(command -v "$1")"
    else
        echo "install-system-deps: $1 missing, will install Debian package $2"
        case " $missing " in *" $2 "*) ;; *) missing="$missing $2" ;; esac
    fi
}

need prometheus prometheus
need promtool prometheus
need systemd-analyze systemd
need systemd-sysusers systemd
need verilator verilator
need ccache ccache

if [ -z "$missing" ]; then
    echo "install-system-deps: nothing to do"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: apt-get not found; install these packages by hand:$missing" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-system-deps: not root and sudo not found; run as root to install:$missing" >&2
        exit 1
    fi
    SUDO="sudo"
fi

# Keep the package's own service from starting (policy-rc.d exit 101 = "action forbidden"), unless asked to
# or unless the host already has a policy; the temporary policy is removed again whatever happens.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ "${FPGACSP_START_SERVICES:-0}" != "1" ] && [ ! -e "$policy" ]; then
    echo "install-system-deps: temporarily forbidding service starts ($policy)"
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    added_policy=1
fi
cleanup() {
    if [ "$added_policy" = 1 ]; then
        echo "install-system-deps: removing $policy"
        $SUDO rm -f "$policy"
    fi
}
trap cleanup EXIT

echo "install-system-deps: apt-get update"
$SUDO apt-get update -q
echo "install-system-deps: apt-get install -y --no-install-recommends$missing"
# shellcheck disable=SC2086  # $missing is a word list on purpose
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing

for tool in prometheus promtool systemd-analyze systemd-sysusers verilator; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-system-deps: $tool still missing after the install" >&2
        exit 1
    fi
done
echo "install-system-deps: done ($(prometheus --version 2>&1 | head -n 1))"
