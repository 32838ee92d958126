"""results.json -> docs/benchmarks.md (tables, ratios, method, machine) + docs/benchmarks.png.

    python -m bench.report bench-results/<stamp>/results.json [more results.json ...]

Every number in the report comes from results.json; bench/notes.md (hand-written
observations: profiles, peer quirks) is appended verbatim.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ORDER = ["eoflow-eos", "eoflow-alo", "kstreams-eos", "faust-eos", "faust-alo", "quix-eos",
         "raw-aiokafka", "raw-batched", "kstreams-eos-cached"]
LABEL = {
    "eoflow-eos": "eoflow exactly_once",
    "eoflow-alo": "eoflow at_least_once",
    "kstreams-eos": "Kafka Streams exactly_once_v2 (Java, record cache off)",
    "faust-eos": "faust-streaming exactly_once (RocksDB)",
    "faust-alo": "faust-streaming at_least_once (RocksDB)",
    "quix-eos": "Quix Streams exactly-once",
    "raw-aiokafka": "raw aiokafka loop, no transactions (naive ceiling)",
    "raw-batched": "batched aiokafka pipeline, no transactions (tight ceiling)",
    "kstreams-eos-cached": "Kafka Streams exactly_once_v2 (Java, default record cache)",
}
#: Systems whose output is not one record per input: reported as a workload of their own,
#: never in a ratio.
OWN_WORKLOAD = {"kstreams-eos-cached": "count-cached"}
WORKLOADS = ("passthrough", "count", "count-tumbling", "count-hopping", "count-cached")
WINDOWED = {"count-tumbling": "tumbling", "count-hopping": "hopping"}
WORKLOAD_TITLE = {
    "passthrough": "passthrough",
    "count": "count",
    "count-tumbling": "windowed count, tumbling 1 s (records/s = input records)",
    "count-hopping": "windowed count, hopping 1 s every 0.5 s (two outputs per input; "
                     "records/s = input records)",
    "count-cached": "count with Kafka Streams' record cache (fewer outputs; not a ratio)",
}


#: Systems that do not run a windowed count, and why (listed under its tables).
NOT_RUN = {
    ("faust-eos", "count-hopping"): "faust-streaming 0.15's hopping windows step with "
        "`range(int(start), int(timestamp) + 1, int(step))`: a 0.5 s step raises "
        "`ValueError: range() arg 3 must not be zero` on the first record",
    ("kstreams-eos", "count-tumbling"): "not written yet (bench/kstreams has passthrough and "
        "count only)",
    ("raw-batched", "count-tumbling"): "not written (the naive raw loop is the windowed "
        "ceiling)",
}
#: What to know about a system's windowed outputs (printed under the windowed tables).
WINDOW_NOTES = {
    "faust-eos": "faust-streaming expires windows by the **wall clock**, not by event "
        "time: every `table_cleanup_interval` (30 s) `_del_old_keys` deletes the windows "
        "with `window.stale(timestamp, time.time())`, i.e. ended more than `expires` "
        "before now. The input is produced before the runs, so once a faust run is past "
        "30 s it deletes windows that are still receiving records, and their counts "
        "start again at 1: its window counts are wrong (the check above), its throughput "
        "is still that of the same work per record.",
}
WINDOW_NOTES["faust-alo"] = WINDOW_NOTES["faust-eos"]
NOT_RUN[("faust-alo", "count-hopping")] = NOT_RUN[("faust-eos", "count-hopping")]
NOT_RUN[("kstreams-eos", "count-hopping")] = NOT_RUN[("kstreams-eos", "count-tumbling")]
NOT_RUN[("raw-batched", "count-hopping")] = NOT_RUN[("raw-batched", "count-tumbling")]


def workload_of(r: dict[str, Any]) -> str:
    return OWN_WORKLOAD.get(r["system"], r["workload"])


def _ms(interval: float) -> str:
    return f"{round(interval * 1000)} ms" if interval < 1 else f"{interval:g} s"


def _stat(xs: list[float]) -> tuple[float, float, float] | None:
    return (statistics.median(xs), min(xs), max(xs)) if xs else None


def _fmt_rate(s: tuple[float, float, float] | None, n: int) -> str:
    if s is None:
        return "failed"
    med, lo, hi = s
    return f"{med:,.0f} ({lo:,.0f}–{hi:,.0f}), n={n}" if n > 1 else f"{med:,.0f} (n=1)"


def summarize(runs: list[dict[str, Any]]) -> dict[tuple[str, float, str], dict[str, Any]]:
    out: dict[tuple[str, float, str], dict[str, Any]] = defaultdict(
        lambda: {"rates": [], "outputs": [], "expected": None, "rss": [], "failed": 0,
                 "lat": [], "over": [], "cpu": [], "windows": []})
    for r in runs:
        cell = out[(workload_of(r), r["interval"], r["system"])]
        if r["kind"] == "throughput":
            cell["expected"] = r["expected"]
            cell["outputs"].append(r["output"])
            if "over_counts" in r:
                cell["over"].append(r["over_counts"])
            cell["rss"].append(r["peak_rss_mb"])
            if "windows" in r:
                cell["windows"].append(r)
            if r["ok"]:
                cell["rates"].append(r["rate"])
                if "cpu_us_per_record" in r:
                    cell["cpu"].append(r["cpu_us_per_record"])
            else:
                cell["failed"] += 1
        else:
            cell["lat"].append(r)
    return out


def chart(cells: dict[tuple[str, float, str], dict[str, Any]],
          systems_of: dict[str, list[str]], intervals: list[float], path: Path) -> None:
    """Throughput and latency bars, one column per workload (``systems_of``: its systems)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [max(2, len(systems)) for systems in systems_of.values()]
    fig, axes = plt.subplots(2, len(systems_of), figsize=(1.1 * sum(sizes) + 1.5, 8.5),
                             squeeze=False, gridspec_kw={"width_ratios": sizes})
    for col, (wl, systems) in enumerate(systems_of.items()):
        _throughput_bars(axes[0][col], cells, wl, systems, intervals)
        _latency_bars(axes[1][col], cells, wl, systems, intervals)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _offsets(n_systems: int, intervals: list[float], j: int) -> tuple[list[float], float]:
    width = 0.8 / max(1, len(intervals))
    return [i + (j - (len(intervals) - 1) / 2) * width for i in range(n_systems)], width


def _throughput_bars(ax: Any, cells: dict[tuple[str, float, str], dict[str, Any]], wl: str,
                     systems: list[str], intervals: list[float]) -> None:
    for j, iv in enumerate(intervals):
        meds, errs = [], [[], []]
        for s in systems:
            st = _stat(cells[(wl, iv, s)]["rates"])
            med, lo, hi = st if st else (0, 0, 0)
            meds.append(med)
            errs[0].append(med - lo)
            errs[1].append(hi - med)
        xs, width = _offsets(len(systems), intervals, j)
        ax.bar(xs, meds, width, yerr=errs, capsize=3, label=f"commit {_ms(iv)}")
    ax.set_title(f"{wl}: throughput\n(records/s, median, min–max)")
    ax.set_xticks(range(len(systems)), systems, rotation=25, ha="right")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _latency_bars(ax: Any, cells: dict[tuple[str, float, str], dict[str, Any]], wl: str,
                  systems: list[str], intervals: list[float]) -> None:
    if not any("p50_ms" in r for s in systems for iv in intervals
               for r in cells[(wl, iv, s)]["lat"]):
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"{wl}: no latency runs", ha="center", va="center")
        return
    for j, iv in enumerate(intervals):
        p50, p99 = [], []
        for s in systems:
            lat = [r for r in cells[(wl, iv, s)]["lat"] if "p50_ms" in r]
            p50.append(statistics.median(r["p50_ms"] for r in lat) if lat else 0)
            p99.append(statistics.median(r["p99_ms"] for r in lat) if lat else 0)
        xs, width = _offsets(len(systems), intervals, j)
        bars = ax.bar(xs, p99, width, alpha=0.45, label=f"p99, commit {_ms(iv)}")
        ax.bar(xs, p50, width * 0.5, color=bars.patches[0].get_facecolor()[:3],
               label=f"p50, commit {_ms(iv)}")
    ax.set_yscale("log")
    ax.set_title(f"{wl}: end-to-end latency\n(ms, log)")
    ax.set_xticks(range(len(systems)), systems, rotation=25, ha="right")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def write_report(results_files: list[Path] | list[str], md: Path = DOCS / "benchmarks.md",
                 png: Path = DOCS / "benchmarks.png", notes: bool = True) -> None:
    """One report over the runs of every results file (same input size, same broker setup)."""
    import json

    datas = []
    for spec in results_files:
        # "results.json" or "results.json:sys1,sys2" (take only those systems' runs)
        path, _, only = str(spec).partition(":")
        d = json.loads(Path(path).read_text())
        if only:
            keep = set(only.split(","))
            d["runs"] = [r for r in d["runs"] if r["system"] in keep]
            d["env"]["only"] = sorted(keep)
        datas.append(d)
    env = datas[0]["env"]
    runs = [r for d in datas for r in d["runs"]]
    if len({d["env"]["records"] for d in datas}) != 1:
        raise SystemExit("results files with different --records cannot share one report")
    cells = summarize(runs)
    ran = set(cells)  # before any lookup adds an empty cell to the defaultdict
    intervals = sorted({k[1] for k in ran}, reverse=True)
    systems_of = {wl: [s for s in ORDER if any(k[0] == wl and k[2] == s for k in ran)]
                  for wl in WORKLOADS}
    systems_of = {wl: systems for wl, systems in systems_of.items() if systems}
    workloads = list(systems_of)
    systems = [s for s in ORDER if any(s in v for v in systems_of.values())]
    chart(cells, systems_of, intervals, png)

    L: list[str] = []
    w = L.append
    n_thr = sum(1 for r in runs if r["kind"] == "throughput")
    n_lat = sum(1 for r in runs if r["kind"] == "latency")
    w("# Benchmarks\n")
    w("Generated by `make bench` (`python -m bench.run`, then `bench/report.py`) from "
      + ", ".join(f"`{_rel(f)}`" for f in results_files)
      + " — do not edit the numbers by hand; rerun instead.\n")
    w("## What was run\n")
    w(f"- **{env['records']:,} input records** (~100-byte JSON values, {KEYS_TEXT}) over "
      f"**{env['partitions']} partitions**, pre-produced once before any timing and reused by "
      "every run with a fresh consumer group / app id and a fresh output topic.")
    per_cell = [len(c["rates"]) + c["failed"] for c in cells.values() if c["expected"]]
    reps = f"{min(per_cell)}" if min(per_cell) == max(per_cell) else \
        f"{min(per_cell)}–{max(per_cell)}"
    w(f"- **{reps} throughput repeat(s)** per (system, workload, commit interval): "
      f"{n_thr} throughput runs, {n_lat} latency runs. "
      + ("Numbers are the median with min–max in parentheses." if min(per_cell) > 1 else
         "**One repeat only: no min/max spread is available; treat differences under ~20 % "
         "as noise.**"))
    w(f"- Commit interval: {', '.join(_ms(i) for i in intervals)} for every system that has "
      "one (eoflow `commit_interval`, Kafka Streams `commit.interval.ms`, faust "
      "`broker_commit_interval` with `broker_commit_every` disabled, Quix `commit_interval`, "
      "the raw loop's offset-commit period; the batched pipeline commits after every fetch "
      "whatever the interval).")
    w(f"- Latency: {env['latency_rate']:,} records/s for {env['latency_seconds']} s per run, "
      "one run per cell (none for the windowed counts).")
    for i, d in enumerate(datas, 1):
        e = d["env"]
        only = f" — only the runs of {', '.join(e['only'])} are used" if e.get("only") else ""
        w(f"- Session {i}: {e['started']} – {e.get('finished', '(not finished)')}, eoflow commit "
          f"`{e['git']}` at start: `python -m bench.run {' '.join(e['argv'])}`{only}")
    w("")

    w("## Throughput (records/s)\n")
    w("From the first input record reaching user code to the last expected output record "
      "read by a `read_committed` consumer. Output = records read / expected "
      "(after a 2 s grace period that would catch duplicates).\n")
    for wl in workloads:
        for iv in intervals:
            w(f"### {WORKLOAD_TITLE[wl]}, commit interval {_ms(iv)}\n")
            if wl in OWN_WORKLOAD.values():
                w(CACHED_TEXT)
            w("| system | records/s median (min–max) | output / expected | peak RSS MB | "
              "latency p50 ms | latency p99 ms |")
            w("|---|---|---|---|---|---|")
            for s in systems_of[wl]:
                c = cells[(wl, iv, s)]
                outs = ", ".join(f"{o:,}" for o in c["outputs"])
                exp = f"{c['expected']:,}" if c["expected"] else "?"
                if c["over"]:
                    exp += " inputs; counts above final: " + ", ".join(map(str, c["over"]))
                rss = f"{statistics.median(c['rss']):.0f}" if c["rss"] else "–"
                lat = [r for r in c["lat"] if "p50_ms" in r]
                none = "failed" if c["lat"] else "not run"
                p50 = f"{statistics.median(r['p50_ms'] for r in lat):,.0f}" if lat else none
                p99 = f"{statistics.median(r['p99_ms'] for r in lat):,.0f}" if lat else none
                if lat and any(not r["ok"] for r in lat):
                    p99 += " (incomplete: " + ", ".join(
                        f"{r['measured']}/{r['sent']}" for r in lat) + ")"
                rate = _fmt_rate(_stat(c["rates"]), len(c["rates"]))
                if c["failed"]:
                    rate += f"; {c['failed']} run(s) failed"
                w(f"| {LABEL[s]} | {rate} | {outs} / {exp} | {rss} | {p50} | {p99} |")
            w("")
            if wl in WINDOWED:
                _window_check(w, cells, wl, iv, systems_of[wl], systems)

    w("## Ratios: eoflow exactly_once ÷ each system (median throughput)\n")
    others = [s for s in systems if s != "eoflow-eos" and s not in OWN_WORKLOAD]
    w("| workload | commit | " + " | ".join(f"÷ {s}" for s in others) + " |")
    w("|---|---|" + "---|" * len(others))
    for wl in workloads:
        if wl in OWN_WORKLOAD.values():
            continue
        for iv in intervals:
            eos = _stat(cells[(wl, iv, "eoflow-eos")]["rates"])
            row = []
            for s in others:
                st = _stat(cells[(wl, iv, s)]["rates"])
                row.append(f"{eos[0] / st[0]:.2f}×" if eos and st else "n/a")
            w(f"| {wl} | {_ms(iv)} | " + " | ".join(row) + " |")
    w("")
    notes_on = {
        "raw-batched": "`÷ raw-batched` is the fraction of the tight no-transaction ceiling "
                       "(client-side batches, nothing awaited per record).",
        "raw-aiokafka": "`÷ raw-aiokafka` is the fraction of the naive no-transaction loop "
                        "(one awaited send per record).",
        "eoflow-alo": "`÷ eoflow-alo` below 1 is the cost of exactly-once in eoflow.",
        "kstreams-eos-cached": "Kafka Streams with its record cache writes fewer records "
                               "than it reads, so it has no ratio (its own table above).",
    }
    w(" ".join(text for s, text in notes_on.items() if s in systems) + "\n")

    if ("count", 1.0, "eoflow-eos") in cells:
        w("### Targets (stateful count, commit 1 s)\n")
        eos = _stat(cells[("count", 1.0, "eoflow-eos")]["rates"])
        targets = [("faust-eos", 3.0, "≥ 3× faust exactly_once"),
                   ("quix-eos", 1.0, "≥ 1× Quix exactly-once"),
                   ("raw-aiokafka", 0.5, "≥ 50 % of the raw ceiling"),
                   ("eoflow-alo", 0.85, "≤ 15 % slower than eoflow at_least_once")]
        w("| target | measured | met |")
        w("|---|---|---|")
        for s, need, text in targets:
            st = _stat(cells[("count", 1.0, s)]["rates"]) if ("count", 1.0, s) in cells else None
            if eos and st:
                ratio = eos[0] / st[0]
                w(f"| {text} | {ratio:.2f}× | {'yes' if ratio >= need else '**no**'} |")
            else:
                w(f"| {text} | n/a | n/a |")
        w("")

    if any(k[0] in WINDOWED and k[2] == "eoflow-eos" and ("count", k[1], "eoflow-eos") in ran
           for k in ran):
        _windowed_vs_count(w, cells, ran, intervals)

    failed = [r for r in runs if not r.get("ok")]
    if failed:
        w("## Failed runs\n")
        for r in failed:
            w(f"- `{r['run']}` ({r['kind']}): {r.get('error', '')}; output "
              f"{r.get('output', '?')}, exit code {r.get('returncode')}")
            tail = (r.get("log_tail") or "").strip()
            if tail:
                w("\n  ```\n" + "\n".join("  " + ln for ln in tail.splitlines()[-8:])
                  + "\n  ```")
        w("")

    w(f"![throughput and latency]({png.name})\n")

    sessions = {d["env"]["started"]: i + 1 for i, d in enumerate(datas)}
    session_of = {id(r): sessions[d["env"]["started"]] for d in datas for r in d["runs"]}
    w("## Every throughput run\n")
    w("Session numbers refer to the list under *What was run* (each records the eoflow "
      "commit it ran).\n")
    w("| system | workload | commit | session | records/s | output | startup s | "
      "peak RSS MB | load avg 1 min | eoflow code |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted((r for r in runs if r["kind"] == "throughput"),
                    key=lambda r: (WORKLOADS.index(workload_of(r)), -r["interval"],
                                   ORDER.index(r["system"]), session_of[id(r)])):
        rate = f"{r['rate']:,.0f}" if r.get("ok") else "failed"
        st = f"{r['startup_s']:.1f}" if r.get("startup_s") is not None else "–"
        head = (f"| {r['system']} | {workload_of(r)} | {_ms(r['interval'])} "
                f"| {session_of[id(r)]} | {rate} | {r['output']:,} | {st} "
                f"| {r['peak_rss_mb']:.0f} ")
        if "loadavg_1m" in r:
            tail = f"| {r['loadavg_1m']:.1f} | {r.get('eoflow_code') or ''} |"
        else:
            tail = "| not recorded | " + (
                "not recorded |" if r["system"].startswith("eoflow") else " |")
        w(head + tail)
    w("")

    w("## Method\n")
    w(METHOD)
    w("## Machine and versions\n")
    w(f"- CPU: {env['cpu']}, {env['cpus']} logical CPUs, {env['memory_gb']} GiB RAM "
      "(broker, driver and the system under test share them)")
    w(f"- OS: {env['platform']}; Python {env['python']}; {env['java']}; "
      f"Kafka {env['kafka']}, single broker, JVM heap 1 GiB")
    for k, v in env["versions"].items():
        w(f"- {k} {v}")
    w("")
    w("## Commands\n")
    w("```")
    w("make bench                                        # full: BENCH_RECORDS=1000000 "
      "BENCH_REPEATS=3")
    w("make bench BENCH_RECORDS=200000 BENCH_REPEATS=1   # smaller")
    w("make bench BENCH_ARGS=--quick                     # smoke test, ~5 minutes; "
      "report in bench-results/<stamp>/")
    w("bench/.venv/bin/python -m bench.report bench-results/<stamp>/results.json  "
      "# report only")
    w(".venv/bin/python -m bench.table_ops                # CPU per table operation, "
      "no broker")
    w("```\n")
    w("This report: " + "; ".join(
        f"`bench/.venv/bin/python -m bench.run {' '.join(d['env']['argv'])}`" for d in datas)
      + "; then `bench/.venv/bin/python -m bench.report "
      + " ".join(str(_rel(f)) for f in results_files)
      + ("" if md == DOCS / "benchmarks.md" else f" --md {_rel(md)} --png {_rel(png)}")
      + ("" if notes else " --no-notes") + "`\n")
    notes_md = ROOT / "bench" / "notes.md"
    if notes and notes_md.exists():
        w(notes_md.read_text())
    md.write_text("\n".join(L) + "\n")
    print(f"wrote {md} and {png}")


def _window_check(w: Any, cells: dict[tuple[str, float, str], dict[str, Any]], wl: str,
                  iv: float, ran: list[str], systems: list[str]) -> None:
    """Under a windowed table: whether each run's outputs checked out, whether every
    system ended with the same window counts, and which systems did not run it."""
    digests: dict[str, set[str]] = {}
    bad = []
    for s in ran:
        for r in cells[(wl, iv, s)]["windows"]:
            digests.setdefault(r["windows_digest"], set()).add(s)
            if not r["windows_ok"]:
                bad.append(f"{s} ({r['windows_bad']} windows with a missing or repeated "
                           f"count, final counts adding up to {r['windows_total']:,})")
    if digests:
        n = next(iter(cells[(wl, iv, s)]["windows"] for s in ran
                      if cells[(wl, iv, s)]["windows"]))[0]["windows"]
        same = (f"every run ended with the same final count in each of the {n:,} "
                f"(key, window)s (digest `{next(iter(digests))}`)" if len(digests) == 1 else
                "final counts **differ**: " + "; ".join(
                    f"`{d}`: {', '.join(sorted(ss))}" for d, ss in digests.items()))
        w(f"Window check: {same}; " + ("runs whose outputs are not 1, 2, …, n per window: "
                                      + ", ".join(bad) if bad else
                                      "in every run each window's counts went 1, 2, …, n "
                                      "with none missing or repeated.") + "\n")
    notes = {WINDOW_NOTES[s] for s in ran if s in WINDOW_NOTES}
    for text in notes:
        w(text + "\n")
    missing = [s for s in systems if s not in ran and (s, wl) in NOT_RUN]
    for s in missing:
        w(f"- not run: {LABEL[s]}: {NOT_RUN[(s, wl)]}")
    if missing:
        w("")


def _windowed_vs_count(w: Any, cells: dict[tuple[str, float, str], dict[str, Any]],
                       ran: set[tuple[str, float, str]], intervals: list[float]) -> None:
    """Issue 11's target: eoflow's windowed count within 15 % of its own count."""
    w("## Windowed count ÷ eoflow's own count (target ≥ 0.85)\n")
    w("eoflow exactly_once, median input records/s of the windowed count over that of the "
      "non-windowed count in the same session(s); CPU µs per input record as a second, "
      "load-insensitive measure (a ratio above 1 is more CPU).\n")
    w("| workload | commit | records/s | ÷ count records/s | CPU µs/record | "
      "÷ count CPU | target met |")
    w("|---|---|---|---|---|---|---|")
    for wl in WINDOWED:
        for iv in intervals:
            if (wl, iv, "eoflow-eos") not in ran or ("count", iv, "eoflow-eos") not in ran:
                continue
            win, base = cells[(wl, iv, "eoflow-eos")], cells[("count", iv, "eoflow-eos")]
            if not win["rates"] or not base["rates"]:
                w(f"| {wl} | {_ms(iv)} | failed | n/a | n/a | n/a | n/a |")
                continue
            rate, brate = statistics.median(win["rates"]), statistics.median(base["rates"])
            cpu = f"{statistics.median(win['cpu']):.1f}" if win["cpu"] else "n/a"
            cpu_ratio = (f"{statistics.median(win['cpu']) / statistics.median(base['cpu']):.2f}"
                         if win["cpu"] and base["cpu"] else "n/a")
            met = "yes" if rate / brate >= 0.85 else "**no**"
            w(f"| {wl} | {_ms(iv)} | {rate:,.0f} | {rate / brate:.2f} | {cpu} | {cpu_ratio} "
              f"| {met} |")
    w("")


CACHED_TEXT = """\
Kafka Streams with its default record cache (`statestore.cache.max.bytes` 10 MiB) emits a
key's latest count when the cache is flushed (every commit) or evicts it, not once per
input: the output column counts those updates. The run ends when every key's latest
committed count equals its number of inputs; a count above that (a duplicate) would be
listed. Not comparable record for record with the systems above, hence no ratio; no
latency run (latency is measured per input record).
"""

KEYS_TEXT = "keys `k0`…`k9999` (10,000 distinct keys, default murmur2 partitioner)"

METHOD = """\
- **Isolation.** One Kafka 3.9.2 broker (`tools/kafka/kafkactl.py`, free port) for the
  whole session. Each system runs as its own subprocess (`bench/apps/*.py`; Kafka
  Streams is a JVM, `bench/kstreams/`, built with Maven by `bench/kstreams_build.py`), one
  at a time, started only after the input is fully produced. All Python peers share one
  venv (`bench/.venv`, from the `bench` extra pinned by `bench/constraints.txt`):
  faust-streaming 0.15 accepts aiokafka 0.14 and Quix uses confluent-kafka, so nothing
  conflicts.
- **Same work everywhere** (`bench/apps/_common.py`): passthrough parses the JSON value,
  upper-cases `pad`, re-serializes it to the output topic under the same key; count does
  `counts[key] += 1` in the system's persistent table (eoflow `app.Table` on RocksDB,
  faust `app.Table` with `store="rocksdb://"`, which faust-streaming 0.15 backs with
  rocksdict because python-rocksdb is not installed — it has no `rocksdict://` URL;
  Quix `State` on its RocksDB store, Kafka Streams' DSL `groupByKey().aggregate()` into
  its RocksDB key-value store) and emits `{"ts", "count"}`. Every system writes the same
  bytes under the same key to the same partition (checked on a 200-record input).
- **Kafka Streams** (`bench/kstreams/`, kafka-streams from Maven Central, Java 17):
  `processing.guarantee=exactly_once_v2`, one stream thread, `commit.interval.ms` = the
  run's interval, Jackson for the JSON; its own defaults otherwise (e.g. producer
  `linger.ms=100`, `max.poll.records=1000`) and the JVM's (G1, max heap ¼ of RAM).
  `kstreams-eos` sets `statestore.cache.max.bytes=0`, so the count emits one record per
  input like every other system; `kstreams-eos-cached` keeps the default 10 MiB record
  cache and is reported as a workload of its own.
- **Windowed counts** (`count-tumbling`, `count-hopping`): 1 s windows (hopping: a new
  one every 0.5 s, so two per record), grace 0, windows kept 10 s past their end; a
  record's window is that of its Kafka timestamp (set by the producer when the input was
  pre-produced, so in time order within a partition and nothing is late). Per input, for
  each window holding it, the system emits `{"start": window start in ms, "count": the
  window's count so far}` under the input's key: eoflow
  `app.Table(...).tumbling(1.0, expires=10.0)` / `.hopping(1.0, 0.5, expires=10.0)`,
  `table[key] += 1`, then each window's value; faust `app.Table(...).tumbling(1.0,
  expires=10.0)`, `table[key] += 1`, `.current()`; Quix
  `sdf.tumbling_window(1000).count().current()` / `.hopping_window(1000, 500)` (Quix
  deletes a window when it closes; it has no separate expiry); the raw loop a dict keyed
  by (key, window start), pruned every 10,000 records. The run ends when the outputs
  reach the inputs (tumbling) or twice the inputs (hopping); records/s counts inputs.
  Afterwards the driver checks the outputs: per (key, window) the counts 1, 2, …, n
  once each, the final counts adding up to the outputs, and a digest of the final counts
  that must be the same for every system.
- **Ceilings, no transactions, counts in a dict (no store, no changelog).** The naive raw
  loop (`raw_app.py`) awaits one aiokafka `send()` per record (`acks=all`,
  `linger_ms=10`) and commits offsets every interval after a flush. The batched pipeline
  (`raw_batched_app.py`) takes up to 20,000 records per `getmany()`, appends the outputs
  to one `create_batch()` builder per output partition, hands them over with
  `send_batch()` (`linger_ms=0`, 512 KiB batches) without awaiting anything per record,
  uses orjson as eoflow does, and commits each fetch's offsets once its batches are
  acknowledged, in a task that overlaps with the next fetch.
- **Throughput clock.** Start = the wall-clock time the app itself records when the first
  input record reaches user code (so process start, imports, group join and store
  opening are excluded; `startup_s` is kept in results.json). End = the time the driver's
  `read_committed` consumer (assigned to every output partition, `fetch_max_wait_ms=50`)
  has read the expected number of records (for Kafka Streams with its record cache: has
  seen every key's final count). records/s = expected / (end − start). Because EOS
  output only becomes visible at a commit, the end includes up to one commit interval.
- **Output count.** After the expected count is reached the driver keeps reading for 2 s,
  then SIGTERMs the system; output = every committed record read. More than expected
  means duplicates.
- **Latency.** Fresh input and output topics; the system is started and warmed up with a
  trickle until its first output is visible, then the driver produces at a fixed rate
  with `time.time()` in each value (`linger_ms=0`); latency = time the output record is
  read by a `read_committed` consumer (`fetch_max_wait_ms=10`) − that send time. One
  process clock, so no clock skew. Percentiles over every record sent in the measured
  window.
- **Peak RSS.** psutil, summed over the system's process tree, sampled every 0.2 s.
"""


def _rel(f: Path) -> Path:
    f = Path(f).resolve()
    return f.relative_to(ROOT) if f.is_relative_to(ROOT) else f


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="results.json files -> markdown report + chart")
    ap.add_argument("results", nargs="+",
                    help="results.json, or results.json:system1,system2 to take only those")
    ap.add_argument("--md", type=Path, default=DOCS / "benchmarks.md")
    ap.add_argument("--png", type=Path, default=DOCS / "benchmarks.png")
    ap.add_argument("--no-notes", action="store_true", help="leave out bench/notes.md")
    a = ap.parse_args()
    write_report(a.results, md=a.md, png=a.png, notes=not a.no_notes)
