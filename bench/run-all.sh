#!/bin/sh
# run-all.sh -- run every benchmark binary of a build directory.
#
#   bench/run-all.sh BUILD_DIR [ARGS...]
#
# Runs BUILD_DIR/bench-engine (with ARGS, e.g. --quick), then
# BUILD_DIR/bench-trace-replay and any other BUILD_DIR/bench-* program (with
# no arguments), each one after the other so they do not share the CPUs. A
# program that exits 77 could not run here (bench-redis without redis-server)
# and said why: skipped, not an error.
# Every program prints its own table and "RESULT ..." lines; at the end this
# script repeats the target verdicts of all of them. A benchmark whose target
# FAILs is not an error; a program that crashes or exits non-zero is, and
# makes this script exit 1. Results are written up in docs/benchmarks.md.
#
# Then the HTTP benchmark, bench/http/run.sh (strata serve from BUILD_DIR
# beside nginx proxy_cache and Varnish under wrk; --quick is passed on). It
# says what is missing and skips it: a peer that is not installed, a strata
# without `serve`, or the whole HTTP benchmark when nginx, wrk or curl is
# absent; none of these is an error. BENCH_HTTP=0 leaves it out.
set -u

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BUILD_DIR [ARGS for bench-engine...]" >&2
    exit 2
fi
build=$1
shift

if [ ! -x "$build/bench-engine" ]; then
    echo "$0: $build/bench-engine not found (configure with -DSTRATA_BENCH=ON and build)" >&2
    exit 2
fi

out=$(mktemp "${TMPDIR:-/tmp}/strata-bench-all.XXXXXX") || exit 1
rcf=$(mktemp "${TMPDIR:-/tmp}/strata-bench-rc.XXXXXX") || exit 1
trap 'rm -f "$out" "$rcf"' EXIT
trap 'exit 130' INT TERM
status=0

# run_one PROG [ARGS...]: run it, show and keep its output, note a failure.
run_one() {
    name=$(basename "$1")
    echo "==== $name ($(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc $(nproc))"
    # POSIX sh has no pipefail: the program's own status goes through a file.
    { "$@"; echo $? >"$rcf"; } | tee -a "$out"
    rc=$(cat "$rcf")
    if [ "$rc" = 77 ]; then
        echo "==== $name: skipped (see above)"
    elif [ "$rc" != 0 ]; then
        echo "==== $name: FAILED TO RUN (exit $rc)"
        status=1
    fi
    echo
}

# bench-engine first (with the caller's arguments), then the others in name
# order, without arguments.
run_one "$build/bench-engine" "$@"
for p in "$build"/bench-*; do
    if [ ! -f "$p" ] || [ ! -x "$p" ] || [ "$p" = "$build/bench-engine" ]; then
        continue
    fi
    run_one "$p"
done

# The HTTP benchmark: exit 77 means it could not run here (said why).
if [ "${BENCH_HTTP:-1}" != 0 ]; then
    http_quick=""
    for a in "$@"; do
        if [ "$a" = --quick ]; then http_quick=--quick; fi
    done
    echo "==== bench/http ($(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc $(nproc))"
    # shellcheck disable=SC2086
    { STRATA_BIN="$(cd "$build" && pwd)/strata" "$(dirname "$0")/http/run.sh" $http_quick 2>&1
      echo $? >"$rcf"; } | tee -a "$out"
    rc=$(cat "$rcf")
    case $rc in
        0) ;;
        77) echo "==== bench/http: skipped (see above)" ;;
        *) echo "==== bench/http: FAILED (exit $rc)"; status=1 ;;
    esac
    echo
fi

echo "==== target verdicts"
grep -E "^RESULT .*status=(PASS|FAIL|SKIP)" "$out" || echo "(none)"
exit $status
