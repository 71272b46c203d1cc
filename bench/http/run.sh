#!/usr/bin/env bash
# bench/http/run.sh -- cache-HIT throughput, latency and CPU cost of
# `strata serve` beside nginx proxy_cache and Varnish, all in front of one
# static nginx origin, measured by wrk in one run, in rotated order.
#
#   bench/http/run.sh                 full run (about 12 minutes with 4 targets)
#   bench/http/run.sh --quick         smoke run: DUR=3s REPS=1 (1-3 minutes)
#   bench/http/run.sh summary DIR     print the tables of an earlier run again
#   bench/http/run.sh --help
#
# Environment (defaults in brackets):
#   STRATA_BIN [build/strata]   strata binary (the Release build of `make`)
#   STRATA_CONFIG []            a strata YAML of your own instead of strata.yaml here
#   TARGETS ["origin nginx varnish strata"]   what to measure; a target whose
#                               program is missing is skipped with a message
#   DUR [10s] REPS [3]          wrk duration per run; rounds (the order of the
#                               targets rotates each round)
#   LOADS ["1:50 2:100"]        wrk threads:connections
#   PATHS ["/small /large"]     1 KiB and 256 KiB bodies (/medium: 16 KiB)
#   WARM_S [2]                  warm-up seconds of wrk per target and path
#   PACED [1] PACED_DUR [DUR] PACED_PATHS [/small] PACED_CONNS [20]
#                               the equal-load tail-latency run: wrk -t1 -c20
#                               with paced-1ms.lua (1 ms between requests)
#   QUIET_MAX [30] QUIET_WAIT [20]  before each run wait up to QUIET_WAIT s until
#                               the CPU used by the machine over 1 s is <= QUIET_MAX
#                               (100 = one core); QUIET_MAX= disables the wait
#   NOISE_MAX [30] NOISE_RETRIES [1]  a run during which other processes (not the
#                               target, not wrk, not interrupt handling) used more
#                               than NOISE_MAX is discarded and repeated, at most
#                               NOISE_RETRIES times; then it is kept and flagged
#   ORIGIN_PORT [18081] NGINX_PORT [18082] VARNISH_PORT [18083] STRATA_PORT [18084]
#   STRATA_ADMIN_PORT [18085] VARNISH_ADMIN_PORT [18089]
#   RUNDIR [/tmp/strata-bench-http] SHMDIR [/dev/shm/strata-bench-http]
#   KEEP [0]                    1: leave the servers running at the end
#
# Exit status: 0 done (a missed performance target is not an error, nor is a
# peer that is not installed or a strata without `serve`: both are skipped
# with a message); 1 failed: an installed server did not start (the others
# are still measured) or a proxy did not serve HITs; 2 usage; 77 skipped:
# nothing can be measured here (no nginx, wrk or curl).
# Only loopback addresses are used, every load is bounded by wrk -d, and only
# the processes this script started are ever signalled.
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

QUICK=0
MODE=run
case "${1:-}" in
    --quick) QUICK=1 ;;
    summary) MODE=summary ;;
    -h | --help) sed -n '2,/^set -E/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "usage: $0 [--quick | summary RESULTS_DIR | --help]" >&2; exit 2 ;;
esac

if [[ $QUICK == 1 ]]; then
    DUR="${DUR:-3s}" REPS="${REPS:-1}" WARM_S="${WARM_S:-1}" QUIET_WAIT="${QUIET_WAIT:-5}"
fi
STRATA_BIN="${STRATA_BIN:-$REPO/build/strata}"
STRATA_CONFIG="${STRATA_CONFIG:-}"
TARGETS="${TARGETS:-origin nginx varnish strata}"
DUR="${DUR:-10s}"
REPS="${REPS:-3}"
LOADS="${LOADS:-1:50 2:100}"
PATHS="${PATHS:-/small /large}"
WARM_S="${WARM_S:-2}"
PACED="${PACED:-1}"
PACED_DUR="${PACED_DUR:-$DUR}"
PACED_PATHS="${PACED_PATHS:-/small}"
PACED_CONNS="${PACED_CONNS:-20}"
QUIET_MAX="${QUIET_MAX-30}"
QUIET_WAIT="${QUIET_WAIT:-20}"
NOISE_MAX="${NOISE_MAX-30}"
NOISE_RETRIES="${NOISE_RETRIES:-1}"
ORIGIN_PORT="${ORIGIN_PORT:-18081}"
NGINX_PORT="${NGINX_PORT:-18082}"
VARNISH_PORT="${VARNISH_PORT:-18083}"
STRATA_PORT="${STRATA_PORT:-18084}"
STRATA_ADMIN_PORT="${STRATA_ADMIN_PORT:-18085}"
VARNISH_ADMIN_PORT="${VARNISH_ADMIN_PORT:-18089}"
RUNDIR="${RUNDIR:-/tmp/strata-bench-http}"
SHMDIR="${SHMDIR:-/dev/shm/strata-bench-http}"
KEEP="${KEEP:-0}"
PEERS="nginx varnish"     # the proxies strata is compared with

NCPU="$(nproc)"
CLK_TCK="$(getconf CLK_TCK)"

exec 3>&2   # the log goes to the original stderr, also from redirected groups
log() { printf '[bench/http %(%H:%M:%S)T] %s\n' -1 "$*" >&3; }
die() { log "ERROR: $*"; exit 1; }
skip_all() { log "SKIPPED: $*"; echo "RESULT name=http status=SKIP reason=\"$*\""; exit 77; }

# ---------------------------------------------------------------- summary
# summarize CSV TARGET_ORDER: the markdown tables and the RESULT lines.
summarize() {
    local csv="$1" order="$2"
    awk -F, -v order="$order" -v peers="$PEERS" '
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    {
        k = $c["mode"] SUBSEP $c["target"] SUBSEP "t" $c["threads"] "c" $c["conns"] SUBSEP $c["path"]
        if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
        nall++; bgs[nall] = $c["machine_before_pct"]; oth[nall] = $c["others_cpu_pct"]
        if ($c["others_cpu_pct"] + 0 > omax + 0 || nall == 1) omax = $c["others_cpu_pct"]
        if ($c["kept"] == "0") { redo[k]++; nredo++; next }
        m = ++n[k]
        R[k, m] = $c["rps"]; P5[k, m] = $c["p50_ms"]; P9[k, m] = $c["p99_ms"]
        C[k, m] = $c["cpu_s"]; E[k, m] = $c["req_per_cpu_s"]
        err[k] += ($c["errors"] ~ /^[0-9]+$/) ? $c["errors"] : 1
        orq[k] += $c["origin_reqs"]; noisy[k] += $c["noisy"]
        if (!($c["mode"] in dur)) dur[$c["mode"]] = $c["wrk_s"]
    }
    function med(A, k, m,    i, j, t, v) {
        for (i = 1; i <= m; i++) v[i] = A[k, i]
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
        return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    function lo(A, k, m,    i, x) { x = A[k, 1]; for (i = 2; i <= m; i++) if (A[k, i] + 0 < x + 0) x = A[k, i]; return x }
    function hi(A, k, m,    i, x) { x = A[k, 1]; for (i = 2; i <= m; i++) if (A[k, i] + 0 > x + 0) x = A[k, i]; return x }
    function ratio(a, b) { return (b + 0 > 0 && a != "") ? sprintf("%.2f", a / b) : "-" }
    function verdict(name, v, op, bound,    ok) {
        if (v == "-") { printf "RESULT name=%s status=SKIP reason=\"no reference measured\"\n", name; return }
        ok = (op == ">=") ? (v + 0 >= bound) : (v + 0 <= bound)
        printf "RESULT name=%s value=%s bound=%s%.2f status=%s\n", name, v, op, bound, ok ? "PASS" : "FAIL"
    }
    END {
        nt = split(order, T, " "); np = split(peers, PE, " ")
        for (a = 1; a <= nk; a++) {
            split(keys[a], f, SUBSEP); gk = f[1] SUBSEP f[3] SUBSEP f[4]
            if (!(gk in gs)) { gs[gk] = 1; G[++ng] = gk }
            if (n[keys[a]] > 0) {
                MR[keys[a]] = med(R, keys[a], n[keys[a]]); M5[keys[a]] = med(P5, keys[a], n[keys[a]])
                M9[keys[a]] = med(P9, keys[a], n[keys[a]]); MC[keys[a]] = med(C, keys[a], n[keys[a]])
                ME[keys[a]] = med(E, keys[a], n[keys[a]])
            }
        }
        for (pass = 1; pass <= 2; pass++) {
            mode = (pass == 1) ? "load" : "paced"; any = 0
            for (b = 1; b <= ng; b++) { split(G[b], g, SUBSEP); if (g[1] == mode) any = 1 }
            if (!any) continue
            if (mode == "load") {
                printf "### Cache HITs at full load (wrk --latency, runs of %s, median of the kept runs)\n\n", dur[mode]
                print "| target | load | path | req/s (median) | req/s min..max | p50 ms | p99 ms | CPU s | req per CPU-s | req/s vs nginx | req/s vs best peer | req/CPU-s vs nginx | req/CPU-s vs best peer | runs kept/redone/noisy | errors | origin reqs |"
                print "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
            } else {
                printf "\n### Tail latency at equal load (wrk --latency -s paced-1ms.lua: each connection waits 1 ms between requests; runs of %s)\n\n", dur[mode]
                print "| target | load | path | req/s (median) | req/s min..max | p50 ms | p99 ms | CPU s | req per CPU-s | p99 vs nginx | p99 vs best peer | req/CPU-s vs nginx | req/CPU-s vs best peer | runs kept/redone/noisy | errors | origin reqs |"
                print "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
            }
            for (b = 1; b <= ng; b++) {
                split(G[b], g, SUBSEP); if (g[1] != mode) continue
                kn = mode SUBSEP "nginx" SUBSEP g[2] SUBSEP g[3]
                # best peer: highest req/s (load) or lowest p99 (paced); best efficiency separately
                bestR = ""; bestP = ""; bestE = ""
                for (p = 1; p <= np; p++) {
                    kp = mode SUBSEP PE[p] SUBSEP g[2] SUBSEP g[3]; if (!(kp in MR)) continue
                    if (bestR == "" || MR[kp] + 0 > bestR + 0) bestR = MR[kp]
                    if (bestP == "" || M9[kp] + 0 < bestP + 0) bestP = M9[kp]
                    if (bestE == "" || ME[kp] + 0 > bestE + 0) bestE = ME[kp]
                }
                for (t = 1; t <= nt; t++) {
                    k = mode SUBSEP T[t] SUBSEP g[2] SUBSEP g[3]
                    if (!(k in seen)) continue
                    m = n[k] + 0
                    if (m == 0) { printf "| %s | %s | %s | (no kept run) |||||||||| 0/%d/0 |||\n", T[t], g[2], g[3], redo[k]; continue }
                    if (mode == "load") { r1 = ratio(MR[k], MR[kn]); r2 = ratio(MR[k], bestR) }
                    else { r1 = ratio(M9[k], M9[kn]); r2 = ratio(M9[k], bestP) }
                    printf "| %s | %s | %s | %.0f | %.0f..%.0f | %.3f | %.3f | %.2f | %.0f | %s | %s | %s | %s | %d/%d/%d | %d | %d |\n",
                        T[t], g[2], g[3], MR[k], lo(R, k, m), hi(R, k, m), M5[k], M9[k], MC[k], ME[k],
                        r1, r2, ratio(ME[k], ME[kn]), ratio(ME[k], bestE), m, redo[k], noisy[k], err[k], orq[k]
                    if (T[t] == "strata") {
                        id = g[2] "_" substr(g[3], 2)
                        if (mode == "load") {
                            VR[++nv] = sprintf("http_rps_%s|%s|>=|1.00", id, ratio(MR[k], bestR))
                            VR[++nv] = sprintf("http_p99_%s|%s|<=|1.00", id, ratio(M9[k], M9[kn]))
                            VR[++nv] = sprintf("http_req_per_cpu_%s|%s|>=|1.30", id, ratio(ME[k], ME[kn]))
                        } else {
                            VR[++nv] = sprintf("http_paced_p99_%s|%s|<=|1.00", id, ratio(M9[k], bestP))
                        }
                    }
                }
            }
        }
        print "\nCPU s: CPU time (user+system) of the target'"'"'s processes during one timed run (median);"
        print "req per CPU-s: requests of that run / its CPU s (median over runs); best peer: the better of"
        print "nginx and Varnish (highest req/s or req/CPU-s, lowest p99); origin reqs: requests that reached"
        print "the origin during the timed runs (0 = the proxy served only HITs); redone: runs discarded because"
        print "other processes used the CPU; noisy: runs still noisy after the retries (kept, counted here)."
        for (i = 1; i <= nall; i++) { B1[1, i] = bgs[i]; O1[1, i] = oth[i] }
        if (nall) printf "\nBackground: %d timed runs; machine CPU in the 1 s before a run: median %s%%, max %s%%; CPU of other processes during a run: median %s%%, max %s%% (100 = one core); %d runs redone.\n", nall, med(B1, 1, nall), hi(B1, 1, nall), med(O1, 1, nall), omax, nredo
        if (nv) {
            print "\nTargets for strata (issue 3): req/s >= best peer, p99 <= nginx, req/CPU-s >= 1.3x nginx, paced p99 <= best peer:\n"
            for (v = 1; v <= nv; v++) { split(VR[v], x, "|"); verdict(x[1], x[2], x[3], x[4] + 0) }
        }
    }' "$csv"
}

if [[ $MODE == summary ]]; then
    dir="${2:-}"
    [[ -f "$dir/runs.csv" ]] || { echo "usage: $0 summary RESULTS_DIR (holding runs.csv)" >&2; exit 2; }
    summarize "$dir/runs.csv" "$(cat "$dir/targets.txt" 2>/dev/null || echo "$TARGETS")"
    exit 0
fi

# ---------------------------------------------------------------- prerequisites
for b in wrk curl nginx awk getconf; do
    command -v "$b" >/dev/null || skip_all "$b is not installed (Debian: apt-get install nginx varnish wrk curl); nothing measured"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

STAMP="$(date +%Y%m%d-%H%M%S)"
RESDIR="$RUNDIR/results/$STAMP"
CSV="$RESDIR/runs.csv"
STARTED=()        # "pid:name" of every process this script started

# ---------------------------------------------------------------- processes
alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# stop_pid PID: TERM, wait up to 5 s, KILL -- only if its command line names
# our run dir (a recycled PID is left alone).
stop_pid() {
    local pid="$1" i
    alive "$pid" || return 0
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$RUNDIR"; then
        log "pid $pid is not one of ours any more; leaving it alone"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
    log "pid $pid did not exit on TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    # a wrk of ours still running (interrupted run): stop it by its PID
    if [[ -n "${WRK_PID:-}" && "$(cat "/proc/$WRK_PID/comm" 2>/dev/null)" == wrk ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
    fi
    for p in $(ps -o pid= --ppid $$ 2>/dev/null); do
        if [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == wrk ]]; then kill -TERM "$p" 2>/dev/null || true; fi
    done
    if [[ "$KEEP" == 1 ]]; then
        log "KEEP=1: leaving the servers running: ${STARTED[*]:-none}"
        exit "$rc"
    fi
    [[ ${#STARTED[@]} -gt 0 ]] && log "stopping what we started: ${STARTED[*]}"
    for p in "${STARTED[@]:-}"; do [[ -n "$p" ]] && stop_pid "${p%%:*}"; done
    rm -rf "$SHMDIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Servers left by an earlier run (KEEP=1, killed): stop them by recorded PID.
stop_leftovers() {
    local f pid
    for f in "$RUNDIR"/pids/*.pid; do
        [[ -s "$f" ]] || continue
        pid="$(tr -dc 0-9 <"$f")"
        if alive "$pid"; then log "stopping leftover pid $pid ($f)"; stop_pid "$pid"; fi
        rm -f "$f"
    done
}

# port_busy PORT: something accepts connections on 127.0.0.1:PORT
port_busy() { (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # wait_port PORT PID: up to 10 s
    local i
    for i in $(seq 100); do
        port_busy "$1" && return 0
        alive "$2" || return 1
        sleep 0.1
    done
    return 1
}
started() { STARTED+=("$1:$2"); echo "$1" >"$RUNDIR/pids/$2.pid"; }

# user+system ticks of the given PIDs and all their descendants (threads
# included: /proc/PID/stat sums them)
tree_ticks() {
    [[ -z "$*" ]] && { echo 0; return; }
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v roots="$*" '
        { j = 0; s = $0; while ((x = index(substr(s, j + 1), ") ")) > 0) j += x
          pid = substr(s, 1, index(s, " ") - 1); split(substr(s, j + 2), f, " ")
          parent[pid] = f[2]; t[pid] = f[12] + f[13] }
        END { nr = split(roots, r, " "); for (i = 1; i <= nr; i++) in_[r[i]] = 1
              do { ch = 0; for (p in parent) if (!(p in in_) && (parent[p] in in_)) { in_[p] = 1; ch = 1 } } while (ch)
              s = 0; for (p in in_) if (p in t) s += t[p]; print s }'
}
# /proc/stat totals: "all idle+iowait irq+softirq steal" (ticks, every CPU)
sys_ticks() { awk '/^cpu /{ t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6, $7 + $8, $9; exit }' /proc/stat; }
# CPU used by the whole machine over 1 s, 100 = one core
busy_1s() {
    local a b
    a="$(sys_ticks)"; sleep 1; b="$(sys_ticks)"
    awk -v a="$a" -v b="$b" -v nc="$NCPU" 'BEGIN { split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]
        if (dt <= 0) print 0; else printf "%.0f\n", (dt - (y[2] - x[2])) / dt * 100 * nc }'
}
wait_quiet() { # prints the last sample
    local bg waited=0
    bg="$(busy_1s)"
    if [[ -n "$QUIET_MAX" ]]; then
        while ((bg > QUIET_MAX && waited < QUIET_WAIT)); do bg="$(busy_1s)"; waited=$((waited + 1)); done
        ((bg > QUIET_MAX)) && log "  machine still busy (${bg}% CPU after ${QUIET_WAIT}s of waiting); running anyway"
    fi
    echo "$bg"
}
origin_reqs() { curl -s --max-time 2 "http://127.0.0.1:$ORIGIN_PORT/nginx_status" | awk 'NR == 3 { print $3 }'; }

# ---------------------------------------------------------------- setup
render() { # render SRC DEST
    sed -e "s#@RUNDIR@#$RUNDIR#g" -e "s#@SHMDIR@#$SHMDIR#g" -e "s#@NGINX_USER@#$NGINX_USER_LINE#g" \
        -e "s#@NGINX_WORKERS@#$NCPU#g" -e "s#@ORIGIN_PORT@#$ORIGIN_PORT#g" \
        -e "s#@NGINX_PORT@#$NGINX_PORT#g" -e "s#@STRATA_PORT@#$STRATA_PORT#g" \
        -e "s#@STRATA_ADMIN_PORT@#$STRATA_ADMIN_PORT#g" -e "s#@STRATA_ADMIN_TOKEN@#$STRATA_ADMIN_TOKEN#g" \
        "$1" >"$2"
}

setup_dirs() {
    mkdir -p "$RUNDIR/pids" "$RESDIR" "$RUNDIR/www" "$RUNDIR"/tmp/{origin,nginx}/{body,proxy,fastcgi,uwsgi,scgi}
    rm -rf "$SHMDIR"
    mkdir -p "$SHMDIR/nginx_cache" "$SHMDIR/nginx_proxy_temp"
    # nginx started as root runs its workers as an unprivileged user
    NGINX_USER_LINE=""
    if [[ $EUID == 0 ]]; then
        local u=www-data
        id "$u" >/dev/null 2>&1 || u=nobody
        NGINX_USER_LINE="user $u;"
        chown -R "$u" "$RUNDIR/tmp" "$SHMDIR/nginx_cache" "$SHMDIR/nginx_proxy_temp" 2>/dev/null || true
    fi
    # fixed, deterministic bodies
    local spec name size
    for spec in small:1024 medium:16384 large:262144; do
        name="${spec%%:*}" size="${spec##*:}"
        if [[ ! -f "$RUNDIR/www/$name.bin" || "$(stat -c %s "$RUNDIR/www/$name.bin")" != "$size" ]]; then
            yes 'strata bench/http fixed body 0123456789 abcdefghijklmnopqrstuvwxyz' | tr -d '\n' |
                head -c "$size" >"$RUNDIR/www/$name.bin" || true
        fi
    done
    chmod -R a+rX "$RUNDIR/www"
    chmod a+x "$RUNDIR"
    STRATA_ADMIN_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    render "$HERE/origin.conf" "$RUNDIR/origin.conf"
    render "$HERE/nginx-cache.conf" "$RUNDIR/nginx-cache.conf"
    render "$HERE/varnish.vcl" "$RUNDIR/varnish.vcl"
    chmod a+r "$RUNDIR/varnish.vcl"
    if [[ -n "$STRATA_CONFIG" ]]; then cp "$STRATA_CONFIG" "$RUNDIR/strata.yaml"; else
        render "$HERE/strata.yaml" "$RUNDIR/strata.yaml"; fi
    chmod 600 "$RUNDIR/strata.yaml"
    cp "$HERE/paced-1ms.lua" "$RUNDIR/paced-1ms.lua"
}

start_nginx() { # start_nginx NAME PORT
    local name="$1" port="$2" pid
    port_busy "$port" && { log "$name: port $port is already in use by another program"; return 1; }
    nginx -t -q -p "$RUNDIR" -c "$RUNDIR/$name.conf" -e stderr >>"$RUNDIR/$name.stderr.log" 2>&1 ||
        { log "$name: nginx -t failed:"; sed 's/^/    /' "$RUNDIR/$name.stderr.log" >&3; return 1; }
    nginx -p "$RUNDIR" -c "$RUNDIR/$name.conf" -e stderr >>"$RUNDIR/$name.stderr.log" 2>&1 &
    pid=$!; started "$pid" "$name"; CPUPIDS[$name]=$pid
    wait_port "$port" "$pid" || { log "$name did not come up on $port (see $RUNDIR/$name.stderr.log)"; return 1; }
    log "$name: nginx on 127.0.0.1:$port (master pid $pid)"
}

start_varnish() {
    local pid p
    for p in "$VARNISH_PORT" "$VARNISH_ADMIN_PORT"; do
        port_busy "$p" && { log "varnish: port $p is already in use by another program"; return 1; }
    done
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$RUNDIR/varnish.secret"
    chmod 600 "$RUNDIR/varnish.secret"
    # one thread pool per core; enough idle worker threads for every connection
    # of the heaviest load, so the pool never grows during a timed run
    varnishd -F -n "$SHMDIR/varnish" -a "127.0.0.1:$VARNISH_PORT" \
        -T "127.0.0.1:$VARNISH_ADMIN_PORT" -S "$RUNDIR/varnish.secret" \
        -f "$RUNDIR/varnish.vcl" -s malloc,1G -P "$RUNDIR/varnishd.pid" \
        -p thread_pools="$NCPU" -p thread_pool_min=200 -p thread_pool_max=2000 \
        -p thread_pool_timeout=300 -p timeout_idle=60 \
        >>"$RUNDIR/varnishd.stderr.log" 2>&1 &
    pid=$!; started "$pid" varnish; CPUPIDS[varnish]=$pid
    wait_port "$VARNISH_PORT" "$pid" || { log "varnish did not come up (see $RUNDIR/varnishd.stderr.log)"; return 1; }
    log "varnish: varnishd (malloc 1G) on 127.0.0.1:$VARNISH_PORT (manager pid $pid)"
}

start_strata() {
    local pid p
    for p in "$STRATA_PORT" "$STRATA_ADMIN_PORT"; do
        port_busy "$p" && { log "strata: port $p is already in use by another program"; return 1; }
    done
    if ! "$STRATA_BIN" check-config -c "$RUNDIR/strata.yaml" >"$RUNDIR/strata.check.log" 2>&1; then
        log "strata: \`strata check-config\` rejects $RUNDIR/strata.yaml:"
        sed 's/^/    /' "$RUNDIR/strata.check.log" >&3
        return 1
    fi
    "$STRATA_BIN" serve -c "$RUNDIR/strata.yaml" --listen "127.0.0.1:$STRATA_PORT" \
        --upstream "http://127.0.0.1:$ORIGIN_PORT" >>"$RUNDIR/strata.log" 2>&1 &
    pid=$!; started "$pid" strata; CPUPIDS[strata]=$pid
    wait_port "$STRATA_PORT" "$pid" || {
        log "strata did not come up on $STRATA_PORT; the end of $RUNDIR/strata.log:"
        tail -n 5 "$RUNDIR/strata.log" | sed 's/^/    /' >&3
        return 1
    }
    log "strata: $STRATA_BIN serve on 127.0.0.1:$STRATA_PORT (pid $pid)"
}

# ---------------------------------------------------------------- HIT check
# check_hit NAME URL SIZE: after two warming requests, a third one must be
# answered in full without reaching the origin (and say HIT where it can).
check_hit() {
    local name="$1" url="$2" size="$3" h status got o0 o1 from_origin marker
    curl -s -o /dev/null --max-time 5 "$url" || true
    curl -s -o /dev/null --max-time 5 "$url" || true
    o0="$(origin_reqs)"
    h="$(curl -s --max-time 5 -D - -o /dev/null -w 'SIZE %{size_download}\n' "$url" | tr -d '\r')" || true
    o1="$(origin_reqs)"
    from_origin=$((o1 - o0 - 1))   # minus the status request that read o1
    status="$(head -n 1 <<<"$h")"
    got="$(awk '/^SIZE /{ print $2 }' <<<"$h")"
    marker="$(grep -iE '^(x-cache-status|cache-status|x-varnish|age):' <<<"$h" | tr '\n' ' ' || true)"
    printf '    %-8s %-36s %s, %s bytes, origin saw %s | %s\n' "$name" "$url" "${status:-no answer}" \
        "${got:-0}" "$from_origin" "${marker:--}" >&3
    [[ "$status" == *" 200"* && "$got" == "$size" ]] || return 1
    [[ "$name" == origin ]] && return 0
    ((from_origin == 0)) || return 1
    case "$name" in
        nginx | varnish) grep -qi '^x-cache-status: HIT' <<<"$h" ;;
        strata) grep -qiE '^cache-status:.*strata; *hit' <<<"$h" ;;
        *) return 0 ;;
    esac
}
path_size() { case "$1" in /small) echo 1024 ;; /medium) echo 16384 ;; /large) echo 262144 ;; *) echo 0 ;; esac; }

# ---------------------------------------------------------------- one wrk run
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0;
    else if (v ~ /[0-9]m$/) printf "%.3f", v * 60000; else if (v ~ /s$/) printf "%.3f", v * 1000; else printf "NA" }'; }

LAST_OTHERS=NA
WRK_PID=""
# run_wrk MODE NAME THREADS CONNS PATH REP: one timed run, one CSV row
run_wrk() {
    local mode="$1" name="$2" th="$3" co="$4" path="$5" rep="$6"
    local url="${URL[$name]}$path" out tf pids bg o0 o1 c0 c1 s0 s1 t0 t1 script=()
    out="$RESDIR/wrk_${mode}_${name}_t${th}c${co}_${path//\//}_r${rep}.txt"
    tf="$RESDIR/.times"
    pids="${CPUPIDS[$name]}"
    [[ $mode == paced ]] && script=(-s "$RUNDIR/paced-1ms.lua")
    local d="$DUR"; [[ $mode == paced ]] && d="$PACED_DUR"
    bg="$(wait_quiet)"
    o0="$(origin_reqs)"
    c0="$(tree_ticks "$pids")"; s0="$(sys_ticks)"; t0="$(date +%s.%N)"
    # wrk in the background so that a signal is handled at once (the trap
    # stops it); its CPU is the children's line of `times` around it
    times >"$tf.0"
    wrk -t"$th" -c"$co" -d"$d" --latency "${script[@]}" "$url" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    times >"$tf.1"
    WRK_PID=""
    t1="$(date +%s.%N)"; s1="$(sys_ticks)"; c1="$(tree_ticks "$pids")"
    o1="$(origin_reqs)"

    local reqs wsec rps p50 p99 err cpu_s rpc tpct wpct others irq steal oreq
    reqs="$(awk '/ requests in /{ print $1 }' "$out")"
    wsec="$(awk '/ requests in /{ v = $4; sub(/,$/, "", v); print v }' "$out")"
    rps="$(awk '/^Requests\/sec:/{ print $2 }' "$out")"
    p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
    err="$(awk '/Socket errors:/{ gsub(",", ""); e += $4 + $6 + $8 + $10 } /Non-2xx or 3xx/{ e += $NF } END { print e + 0 }' "$out")"
    if [[ -z "$rps" || -z "$reqs" ]]; then
        log "  wrk failed against $name: $(head -c 300 "$out" | tr '\n' ' ')"
        reqs=0 wsec=0 rps=0 p50=NA p99=NA err=wrk-failed
    fi
    read -r cpu_s rpc tpct < <(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" -v w0="$t0" -v w1="$t1" -v r="$reqs" 'BEGIN {
        c = (b - a) / hz; printf "%.2f %.0f %.0f\n", c, (c > 0 ? r / c : 0), c / (w1 - w0) * 100 }')
    wpct="$(awk -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" '
        function sec(v,   m) { m = v; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", v); sub(/s$/, "", v); return m * 60 + v }
        FNR == 2 { t[++n] = sec($1) + sec($2) }
        END { if (n == 2 && w > 0) printf "%.0f", (t[2] - t[1]) / w * 100; else print "NA" }' "$tf.0" "$tf.1")"
    rm -f "$tf.0" "$tf.1"
    # everything else on the machine during the run: all CPU in use (steal
    # included) minus the target and wrk. Interrupt and softirq time (the
    # loopback traffic) is charged to the process it interrupted, so it is
    # inside the target's and wrk's figures already; irq is shown for reference.
    read -r others irq steal < <(awk -v a="$s0" -v b="$s1" -v nc="$NCPU" -v tp="$tpct" -v wp="$wpct" 'BEGIN {
        split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]; if (dt <= 0 || wp == "NA") { print "NA NA NA"; exit }
        busy = (dt - (y[2] - x[2])) / dt * 100 * nc; irq = (y[3] - x[3]) / dt * 100 * nc; st = (y[4] - x[4]) / dt * 100 * nc
        printf "%.0f %.0f %.0f\n", busy - tp - wp, irq, st }')
    oreq=$((o1 - o0 - 1))
    local noisy=0
    [[ -n "$NOISE_MAX" && "$others" =~ ^-?[0-9]+$ ]] && ((others > NOISE_MAX)) && noisy=1
    echo "$mode,$name,$th,$co,$path,$rep,$reqs,$wsec,$rps,$p50,$p99,$err,$cpu_s,$rpc,$tpct,$wpct,$others,$irq,$steal,$oreq,$bg,1,$noisy" >>"$CSV"
    LAST_OTHERS="$others"
    printf '  %-5s r%s %-8s t%sc%-4s %-7s %9s req/s  p50 %7s ms  p99 %7s ms  err %s  cpu %5ss (%s%%)  %6s req/cpu-s | wrk %s%% others %s%% irq %s%% steal %s%%, machine before %s%%, origin reqs %s\n' \
        "$mode" "$rep" "$name" "$th" "$co" "$path" "$rps" "$p50" "$p99" "$err" "$cpu_s" "$tpct" "$rpc" "$wpct" "$others" "$irq" "$steal" "$bg" "$oreq" >&3
}

# run_noise_checked MODE NAME THREADS CONNS PATH REP: repeat a noisy run
run_noise_checked() {
    local tries=0
    while :; do
        run_wrk "$@"
        if [[ -n "$NOISE_MAX" && "$LAST_OTHERS" =~ ^-?[0-9]+$ ]] && ((LAST_OTHERS > NOISE_MAX && tries < NOISE_RETRIES)); then
            sed -i '$ s/,1,1$/,0,1/' "$CSV"   # discarded: kept=0
            tries=$((tries + 1))
            log "  -> discarded: other processes used ${LAST_OTHERS}% CPU (> NOISE_MAX=$NOISE_MAX); repeating"
        else
            break
        fi
    done
}

# ---------------------------------------------------------------- main
declare -A URL CPUPIDS
NAMES=()
mkdir -p "$RUNDIR/pids"
stop_leftovers
setup_dirs
log "results -> $RESDIR"

start_nginx origin "$ORIGIN_PORT" || die "the origin (nginx) did not start; nothing can be measured"
URL[origin]="http://127.0.0.1:$ORIGIN_PORT"

SKIPPED=() FAILED=()
for t in $TARGETS; do
    case "$t" in
        origin) NAMES+=(origin) ;;
        nginx)
            if start_nginx nginx-cache "$NGINX_PORT"; then
                CPUPIDS[nginx]="${CPUPIDS[nginx-cache]}"; URL[nginx]="http://127.0.0.1:$NGINX_PORT"; NAMES+=(nginx)
            else SKIPPED+=("nginx: did not start"); FAILED+=(nginx); fi ;;
        varnish)
            if ! command -v varnishd >/dev/null; then
                log "varnish: varnishd is not installed (Debian: apt-get install varnish); skipping the Varnish peer"
                SKIPPED+=("varnish: varnishd not installed")
            elif start_varnish; then
                URL[varnish]="http://127.0.0.1:$VARNISH_PORT"; NAMES+=(varnish)
            else SKIPPED+=("varnish: did not start"); FAILED+=(varnish); fi ;;
        strata)
            if [[ ! -x "$STRATA_BIN" ]]; then
                log "strata: STRATA_BIN=$STRATA_BIN does not exist (build it with \`make\`); skipping strata"
                SKIPPED+=("strata: $STRATA_BIN not found")
            elif ! "$STRATA_BIN" serve --help >/dev/null 2>&1; then
                log "strata: $STRATA_BIN has no \`serve\` command (\`strata serve --help\` fails); skipping strata"
                SKIPPED+=("strata: no serve command in $STRATA_BIN")
            elif start_strata; then
                URL[strata]="http://127.0.0.1:$STRATA_PORT"; NAMES+=(strata)
            else SKIPPED+=("strata: did not start"); FAILED+=(strata); fi ;;
        *) die "unknown target '$t' (known: origin nginx varnish strata)" ;;
    esac
done
((${#NAMES[@]} > 0)) || die "no target left to measure"

{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $NCPU CPUs ($(awk -F': ' '/model name/{ print $2; exit }' /proc/cpuinfo))"
    echo "loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "strata: $STRATA_BIN ($("$STRATA_BIN" version 2>/dev/null | head -n 1 || echo "?")), repo $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo "?")"
    echo "nginx: $(nginx -v 2>&1)"
    echo "varnish: $(varnishd -V 2>&1 | head -n 1 || true)"
    echo "wrk: $(wrk -v 2>&1 | head -n 1 || true)"
    echo "measured: ${NAMES[*]}"
    echo "skipped: ${SKIPPED[*]:-none}"
    echo "DUR=$DUR REPS=$REPS LOADS=$LOADS PATHS=$PATHS WARM_S=$WARM_S PACED=$PACED PACED_DUR=$PACED_DUR PACED_PATHS=$PACED_PATHS PACED_CONNS=$PACED_CONNS"
    echo "QUIET_MAX=$QUIET_MAX QUIET_WAIT=$QUIET_WAIT NOISE_MAX=$NOISE_MAX NOISE_RETRIES=$NOISE_RETRIES"
    echo "ports: origin $ORIGIN_PORT nginx $NGINX_PORT varnish $VARNISH_PORT (admin $VARNISH_ADMIN_PORT) strata $STRATA_PORT (admin $STRATA_ADMIN_PORT)"
} >"$RESDIR/env.txt"
cp "$RUNDIR"/{origin.conf,nginx-cache.conf,varnish.vcl,strata.yaml,paced-1ms.lua} "$RESDIR/" 2>/dev/null || true
sed -i '/^  token:/s/:.*/: (generated)/' "$RESDIR/strata.yaml" 2>/dev/null || true

log "HIT check (third request after two warming ones; the origin must see none of it):"
ok_names=()
for n in "${NAMES[@]}"; do
    ok=1
    for p in $PATHS; do check_hit "$n" "${URL[$n]}$p" "$(path_size "$p")" || ok=0; done
    if ((ok)); then ok_names+=("$n"); else
        [[ $n == origin ]] && die "the origin does not answer as it should (see above)"
        log "$n does not serve every path from its cache (see above): not measured"
        SKIPPED+=("$n: no cache HIT"); FAILED+=("$n")
    fi
done
NAMES=("${ok_names[@]}")
((${#NAMES[@]} > 0)) || die "no target left to measure"
echo "${NAMES[*]}" >"$RESDIR/targets.txt"

if [[ "$WARM_S" != 0 ]]; then
    log "warm-up: wrk -t2 -c100 for ${WARM_S}s per target and path"
    for n in "${NAMES[@]}"; do for p in $PATHS; do
        wrk -t2 -c100 -d"${WARM_S}s" "${URL[$n]}$p" >/dev/null 2>&1 || true
    done; done
fi

echo "mode,target,threads,conns,path,rep,requests,wrk_s,rps,p50_ms,p99_ms,errors,cpu_s,req_per_cpu_s,target_cpu_pct,wrk_cpu_pct,others_cpu_pct,irq_cpu_pct,steal_pct,origin_reqs,machine_before_pct,kept,noisy" >"$CSV"
nt=${#NAMES[@]}
log "measuring ${NAMES[*]}: DUR=$DUR REPS=$REPS LOADS='$LOADS' PATHS='$PATHS' (order rotates each round)"
for load in $LOADS; do
    th="${load%%:*}" co="${load##*:}"
    for p in $PATHS; do
        for rep in $(seq "$REPS"); do
            for i in $(seq 0 $((nt - 1))); do
                run_noise_checked load "${NAMES[$(((i + rep - 1) % nt))]}" "$th" "$co" "$p" "$rep"
            done
        done
    done
done
if [[ "$PACED" == 1 ]]; then
    log "paced tail-latency runs: wrk -t1 -c$PACED_CONNS -d$PACED_DUR --latency -s paced-1ms.lua"
    for p in $PACED_PATHS; do
        for rep in $(seq "$REPS"); do
            for i in $(seq 0 $((nt - 1))); do
                run_noise_checked paced "${NAMES[$(((i + rep - 1) % nt))]}" 1 "$PACED_CONNS" "$p" "$rep"
            done
        done
    done
fi

log "HIT check after the runs:"
for n in "${NAMES[@]}"; do
    for p in $PATHS; do check_hit "$n" "${URL[$n]}$p" "$(path_size "$p")" || log "  -> $n no longer HITs $p"; done
done
echo "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESDIR/env.txt"
# the servers' own counters, for the record (best effort)
if [[ -n "${URL[varnish]:-}" ]] && command -v varnishstat >/dev/null; then
    varnishstat -n "$SHMDIR/varnish" -1 -f MAIN.cache_hit -f MAIN.cache_miss -f MAIN.client_req \
        >"$RESDIR/varnishstat.txt" 2>&1 || true
fi
if [[ -n "${URL[strata]:-}" && -z "$STRATA_CONFIG" ]]; then
    curl -sf --max-time 5 -H "Authorization: Bearer $STRATA_ADMIN_TOKEN" \
        "http://127.0.0.1:$STRATA_ADMIN_PORT/_strata/stats" >"$RESDIR/strata_stats.json" 2>/dev/null ||
        rm -f "$RESDIR/strata_stats.json"
fi

summarize "$CSV" "${NAMES[*]}" >"$RESDIR/summary.md"
{
    echo
    echo "## bench/http ($(date -u '+%Y-%m-%d %H:%M UTC'), $NCPU CPUs, $(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/loadavg /'))"
    echo
    if [[ ${#SKIPPED[@]} -gt 0 ]]; then
        local_j="${SKIPPED[0]}"
        for f in "${SKIPPED[@]:1}"; do local_j+="; $f"; done
        printf 'Not measured: %s\n\n' "$local_j"
    fi
    cat "$RESDIR/summary.md"
    echo
    echo "raw: $CSV (wrk output and env.txt beside it)"
    for f in "${SKIPPED[@]}"; do
        [[ "$f" == strata:* ]] && echo "RESULT name=http_strata status=SKIP reason=\"${f#strata: }\""
    done
}
if [[ ${#FAILED[@]} -gt 0 ]]; then
    log "FAILED: ${FAILED[*]} did not start or did not serve HITs (the others were measured; see the messages above)"
    exit 1
fi
