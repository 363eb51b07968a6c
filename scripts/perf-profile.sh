#!/usr/bin/env bash
# Samples where a running gateway spends its CPU, natively (kernel included), with perf's
# software clock: it needs no hardware counters, so it works on VMs where `perf stat -e
# instructions` says "not supported". Unlike callgrind it sees the real machine (SHA
# extensions, the kernel's TCP work, lock waits), at the price of sampling noise.
#
#   scripts/perf-profile.sh <pid> <seconds> [out-dir]
#
# Attach it while a load-harness cell runs (docs/performance.md, "Reproduce"). The gateway
# needs symbols: build it with CARGO_PROFILE_RELEASE_STRIP=false. Prints the share of the
# samples by area (the same areas as the callgrind table) and the 40 hottest symbols.
set -euo pipefail
pid="${1:?pid of the gateway}"
secs="${2:?seconds to sample}"
out="${3:-/tmp/perf-gateway}"
mkdir -p "$out"
data="$out/perf.data"
# perf exits non-zero when the gateway ends before the time is up; what it has is kept.
perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$data" -- sleep "$secs" 2>"$out/record.log" || true
perf report -i "$data" --stdio --no-children --sort sym --percent-limit 0 2>/dev/null \
  | grep -E '^ +[0-9.]+%' > "$out/symbols.txt" || true
python3 - "$out/symbols.txt" <<'PY'
import re, sys
areas = [
    ("kernel", [r"\[k\]"]),
    ("audit: hashing (HMAC-SHA-256)", [r"sha2::", r"sha256", r"hmac::", r"digest::"]),
    ("audit: SQLite", [r"sqlite3", r"rusqlite", r"pager", r"btree", r"wal[A-Z]", r"pcache", r"vdbe", r"balance_nonroot", r"yy_reduce"]),
    ("malloc/free", [r"malloc", r"free\b", r"_int_free", r"_int_malloc", r"realloc", r"cfree", r"tcache", r"arena", r"consolidate", r"unlink_chunk", r"rjem", r"sdallocx", r"mi_"]),
    ("memcpy/memset/memmove", [r"memcpy", r"memset", r"memmove"]),
    ("JSON (serde_json)", [r"serde_json", r"serde::"]),
    ("HTTP (Pingora, http, httparse, hyper)", [r"pingora", r"httparse", r"http::", r"hyper", r"h2::"]),
    ("Tokio runtime", [r"tokio::", r"mio::", r"parking_lot", r"futex"]),
    ("tracing/logging", [r"tracing"]),
    ("gateway and MCP logic", [r"cortex_gateway", r"cortex_filters"]),
]
total = 0.0
sums = {name: 0.0 for name, _ in areas}
sums["other"] = 0.0
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"\s+([0-9.]+)%\s+(.*)$", line)
    if not m:
        continue
    pct, sym = float(m.group(1)), m.group(2).strip()
    total += pct
    rows.append((pct, sym))
    for name, pats in areas:
        if any(re.search(p, sym) for p in pats):
            sums[name] += pct
            break
    else:
        sums["other"] += pct
print(f"samples by area (% of the gateway's CPU; total {total:.1f} %):")
for name, v in sorted(sums.items(), key=lambda kv: -kv[1]):
    print(f"  {v:6.1f} %  {name}")
print("hottest symbols:")
for pct, sym in rows[:40]:
    print(f"  {pct:6.2f} %  {sym[:150]}")
PY
