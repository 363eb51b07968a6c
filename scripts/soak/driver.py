"""The load and the observer of the soak run (scripts/soak.sh): standard library only.

Against a running gateway on 127.0.0.1 it
- opens STREAMS notification streams (one session each: initialize, notifications/initialized,
  then GET with Accept: text/event-stream) and keeps them open, reopening any that closes;
- runs CLIENTS callers, each on its own keep-alive connection, calling the tools named by
  --tool in turn (stateless POSTs), paced to RATE calls per second in total;
- every 10 s appends one row to the CSV: the gateway's RSS, open descriptors, CPU, the calls
  and errors of the interval per tool, latency percentiles, streams open, and the events
  (backend restarts, reloads) scripts/soak.sh logged in the interval;
- at the end prints a summary: first minute against last minute, and the slope of RSS and
  descriptors over the run (least squares).

Everything is bounded: the run by --seconds, the stream setup by --setup-seconds, every
request by a timeout.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

ACCEPT = "application/json, text/event-stream"
CLK_TCK = os.sysconf("SC_CLK_TCK")
INTERVAL = 10.0
TIMEOUT = 30.0


class HttpError(Exception):
    pass


async def read_response(reader):
    """One HTTP/1.1 response: (status, headers, body). Content-Length or chunked bodies."""
    line = await reader.readline()
    if not line:
        raise HttpError("connection closed")
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError(f"bad status line {line[:80]!r}")
    status = int(parts[1])
    headers = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        body = await reader.read()
    return status, headers, body


def request_bytes(method, host, path, headers, body=b""):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def jsonrpc_of(headers, body):
    """The JSON-RPC message of a POST answer (JSON, or the last data of an event stream)."""
    if headers.get("content-type", "").startswith("text/event-stream"):
        data = [l[5:].strip() for l in body.decode().splitlines() if l.startswith("data:")]
        data = [d for d in data if d]
        return json.loads(data[-1]) if data else None
    return json.loads(body) if body else None


class Conn:
    """One keep-alive connection, reopened on failure."""

    def __init__(self, host, port, path):
        self.host, self.port, self.path = host, port, path
        self.reader = self.writer = None

    async def post(self, message, extra=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        headers = {"Content-Type": "application/json", "Accept": ACCEPT}
        headers.update(extra or {})
        body = json.dumps(message).encode()
        try:
            self.writer.write(request_bytes("POST", f"{self.host}:{self.port}", self.path, headers, body))
            await self.writer.drain()
            status, h, b = await asyncio.wait_for(read_response(self.reader), TIMEOUT)
        except BaseException:
            self.close()
            raise
        if h.get("connection", "").lower() == "close":
            self.close()
        return status, h, b

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Stats:
    def __init__(self, tools):
        self.calls = {t: 0 for t in tools}
        self.errors = {t: 0 for t in tools}
        self.latencies = []
        self.stream_opens = 0
        self.stream_drops = 0
        self.stream_failures = 0
        self.last_error = ""

    def take(self):
        out = (dict(self.calls), dict(self.errors), self.latencies)
        for t in self.calls:
            self.calls[t] = self.errors[t] = 0
        self.latencies = []
        return out


async def caller(args, stats, tools, index, stop):
    conn = Conn(args.host, args.port, args.path)
    period = args.clients / args.rate
    next_at = time.monotonic()
    n = index
    while not stop.is_set():
        tool = tools[n % len(tools)]
        n += 1
        msg = {"jsonrpc": "2.0", "id": n, "method": "tools/call",
               "params": {"name": tool, "arguments": call_arguments(tool, n)}}
        started = time.monotonic()
        ok = False
        try:
            status, h, b = await conn.post(msg)
            answer = jsonrpc_of(h, b)
            ok = (status == 200 and isinstance(answer, dict) and "result" in answer
                  and not answer["result"].get("isError"))
            if not ok:
                stats.last_error = f"{tool}: HTTP {status} {b[:200]!r}"
        except Exception as e:  # noqa: BLE001 (every failure is an error of the interval)
            stats.last_error = f"{tool}: {type(e).__name__} {e}"
        stats.calls[tool] += 1
        if ok:
            stats.latencies.append(time.monotonic() - started)
        else:
            stats.errors[tool] += 1
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        else:
            next_at = time.monotonic()
    conn.close()


def call_arguments(tool, n):
    if tool.endswith("sum"):
        return {"a": n, "b": 1}
    if tool.endswith("echo"):
        return {"message": f"soak {n}", "text": f"soak {n}"}
    return {}


async def open_stream(args):
    """initialize, notifications/initialized, then the GET stream: (reader, writer)."""
    conn = Conn(args.host, args.port, args.path)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "soak", "version": "1"}}}
    status, h, b = await conn.post(init)
    sid = h.get("mcp-session-id")
    if status != 200 or not sid:
        conn.close()
        raise HttpError(f"initialize: HTTP {status}")
    extra = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}
    await conn.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, extra)
    reader, writer = conn.reader, conn.writer
    if writer is None:
        reader, writer = await asyncio.open_connection(args.host, args.port)
    headers = {"Accept": "text/event-stream", **extra}
    writer.write(request_bytes("GET", f"{args.host}:{args.port}", args.path, headers))
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), TIMEOUT)
    if b" 200" not in line:
        writer.close()
        raise HttpError(f"GET stream: {line[:60]!r}")
    while (await asyncio.wait_for(reader.readline(), TIMEOUT)) not in (b"\r\n", b"\n", b""):
        pass
    return reader, writer


async def stream(args, stats, gate, stop, opened):
    """Keeps one notification stream open until the end, reopening it when it closes."""
    first = True
    while not stop.is_set():
        try:
            async with gate:
                reader, writer = await open_stream(args)
        except Exception as e:  # noqa: BLE001
            stats.stream_failures += 1
            stats.last_error = f"stream: {type(e).__name__} {e}"
            await asyncio.sleep(1.0)
            continue
        stats.stream_opens += 1
        if first:
            opened.append(1)
            first = False
        try:
            while not stop.is_set():
                data = await reader.read(4096)
                if not data:
                    break
        except Exception:  # noqa: BLE001
            pass
        finally:
            writer.close()
        if not stop.is_set():
            stats.stream_drops += 1


def proc_sample(pid):
    """(rss_kib, fds, cpu_ticks) of a process, or Nones when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return rss, fds, ticks
    except (OSError, StopIteration, IndexError, ValueError):
        return None, None, None


def gateway_pid(pid_file, fallback):
    try:
        with open(pid_file) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return fallback


def count_events(path):
    try:
        with open(path) as f:
            return [l.split()[1] for l in f if l.strip()]
    except OSError:
        return []


def pct(values, p):
    if not values:
        return ""
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 2)


async def sampler(args, stats, tools, stop, rows, opened):
    fields = ["t_s", "rss_kib", "fds", "cpu_pct", "streams_open", "stream_reopens",
              "stream_failures", "calls", "errors", "error_pct", "p50_ms", "p99_ms", "max_ms"]
    fields += [f"calls_{t}" for t in tools] + [f"errors_{t}" for t in tools]
    fields += ["restarts", "reloads", "last_error"]
    out = open(args.csv, "w")
    out.write(",".join(fields) + "\n")
    start = time.monotonic()
    pid = gateway_pid(args.gateway_pid_file, args.gateway_pid)
    _, _, last_ticks = proc_sample(pid)
    last_t = start
    seen_events = len(count_events(args.events))
    drops_before = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), INTERVAL)
        except asyncio.TimeoutError:
            pass
        now = time.monotonic()
        rss, fds, ticks = proc_sample(pid)
        cpu = ""
        if ticks is not None and last_ticks is not None:
            cpu = round(100.0 * (ticks - last_ticks) / CLK_TCK / (now - last_t), 1)
        last_ticks, last_t = ticks, now
        calls, errors, lat = stats.take()
        total, errs = sum(calls.values()), sum(errors.values())
        events = count_events(args.events)
        new = events[seen_events:]
        seen_events = len(events)
        reopens = stats.stream_drops - drops_before
        drops_before = stats.stream_drops
        row = {
            "t_s": round(now - start, 1), "rss_kib": rss, "fds": fds, "cpu_pct": cpu,
            "streams_open": len(opened) and (stats.stream_opens - stats.stream_drops),
            "stream_reopens": reopens, "stream_failures": stats.stream_failures,
            "calls": total, "errors": errs,
            "error_pct": round(100.0 * errs / total, 3) if total else "",
            "p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99), "max_ms": pct(lat, 1.0),
            "restarts": new.count("restart"), "reloads": new.count("reload"),
            "last_error": json.dumps(stats.last_error[:160]) if errs else "",
        }
        for t in tools:
            row[f"calls_{t}"] = calls[t]
            row[f"errors_{t}"] = errors[t]
        rows.append(row)
        out.write(",".join("" if row[k] is None else str(row[k]) for k in fields) + "\n")
        out.flush()
        print(f"[soak] t={row['t_s']:>6}s rss={rss}KiB fds={fds} cpu={cpu}% "
              f"streams={row['streams_open']} calls={total} err={errs} p50={row['p50_ms']}ms "
              f"p99={row['p99_ms']}ms restarts={row['restarts']} reloads={row['reloads']}",
              flush=True)
    out.close()


def slope_per_min(rows, key):
    pts = [(r["t_s"] / 60.0, r[key]) for r in rows if isinstance(r[key], (int, float))]
    if len(pts) < 3:
        return None
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def summary(rows, tools, stats, setup_s, streams_wanted):
    def window(rs):
        num = lambda k: [r[k] for r in rs if isinstance(r[k], (int, float))]
        calls = sum(num("calls"))
        errs = sum(num("errors"))
        mean = lambda k: round(statistics.fmean(num(k)), 1) if num(k) else None
        return {
            "rss_mib": round(mean("rss_kib") / 1024, 1) if mean("rss_kib") else None,
            "fds": mean("fds"), "cpu_pct": mean("cpu_pct"),
            "streams_open": mean("streams_open"),
            "calls_per_s": round(calls / (INTERVAL * len(rs)), 1) if rs else None,
            "error_pct": round(100.0 * errs / calls, 3) if calls else None,
            "p50_ms": mean("p50_ms"), "p99_ms": mean("p99_ms"),
        }
    per_min = max(1, int(60 / INTERVAL))
    first, last = rows[:per_min], rows[-per_min:]
    total_calls = sum(r["calls"] for r in rows)
    total_errs = sum(r["errors"] for r in rows)
    report = {
        "duration_s": rows[-1]["t_s"] if rows else 0,
        "stream_setup_s": round(setup_s, 1),
        "streams_wanted": streams_wanted,
        "calls": total_calls, "errors": total_errs,
        "error_pct": round(100.0 * total_errs / total_calls, 3) if total_calls else None,
        "errors_by_tool": {t: sum(r[f"errors_{t}"] for r in rows) for t in tools},
        "calls_by_tool": {t: sum(r[f"calls_{t}"] for r in rows) for t in tools},
        "restarts": sum(r["restarts"] for r in rows),
        "reloads": sum(r["reloads"] for r in rows),
        "stream_reopens": stats.stream_drops, "stream_open_failures": stats.stream_failures,
        "first_minute": window(first), "last_minute": window(last),
        "rss_kib_per_min": round(slope_per_min(rows, "rss_kib") or 0, 1),
        "fds_per_min": round(slope_per_min(rows, "fds") or 0, 2),
        "p99_ms_per_min": round(slope_per_min(rows, "p99_ms") or 0, 3),
    }
    return report


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/mcp")
    ap.add_argument("--gateway-pid", type=int, required=True)
    ap.add_argument("--gateway-pid-file", default="")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--setup-seconds", type=float, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--tool", action="append", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--summary", required=True)
    args = ap.parse_args()

    stats = Stats(args.tool)
    stop = asyncio.Event()
    gate = asyncio.Semaphore(64)
    opened = []
    setup_started = time.monotonic()
    streams = [asyncio.create_task(stream(args, stats, gate, stop, opened))
               for _ in range(args.streams)]
    while len(opened) < args.streams and time.monotonic() - setup_started < args.setup_seconds:
        await asyncio.sleep(0.5)
    setup_s = time.monotonic() - setup_started
    print(f"[soak] {len(opened)}/{args.streams} streams open after {setup_s:.1f}s", flush=True)

    rows = []
    tasks = [asyncio.create_task(caller(args, stats, args.tool, i, stop)) for i in range(args.clients)]
    tasks.append(asyncio.create_task(sampler(args, stats, args.tool, stop, rows, opened)))
    await asyncio.sleep(args.seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=TIMEOUT + 5)
    for t in streams:
        t.cancel()
    await asyncio.wait(streams, timeout=10)

    report = summary(rows, args.tool, stats, setup_s, args.streams)
    with open(args.summary, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    asyncio.run(main())
    sys.exit(0)
