"""eoflow's operators and windows against its own passthrough and count (issues 11, 12).

    make bench-ops            # or: bench/.venv/bin/python -m bench.ops [--records N] ...

Runs ``bench.run`` for eoflow exactly_once on passthrough, ``take100`` (take_events(100)
batches), count, ``count-groupby`` (group_by through a repartition topic),
``count-repartition`` (the same written by hand with two agents) and ``count-tumbling``
(a 1 s tumbling windowed table), then prints median records/s and CPU µs per record per
workload, and each against its baseline (take100 ÷ passthrough; the counts ÷ count).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKLOADS = ["passthrough", "take100", "count", "count-groupby", "count-repartition",
             "count-tumbling"]
BASELINE = {"take100": "passthrough", "count-groupby": "count",
            "count-repartition": "count", "count-tumbling": "count"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--interval", default="1.0")
    ap.add_argument("--bootstrap", help="an existing broker (default: bench.run starts one)")
    args = ap.parse_args()
    results = Path("bench-results") / f"ops-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [sys.executable, "-m", "bench.run", "--records", str(args.records), "--repeats",
           str(args.repeats), "--systems", "eoflow-eos", "--workloads", ",".join(WORKLOADS),
           "--intervals", args.interval, "--latency-seconds", "0", "--no-report",
           "--results", str(results)]
    if args.bootstrap:
        cmd += ["--bootstrap", args.bootstrap]
    subprocess.run(cmd, check=True)
    runs = json.loads((results / "results.json").read_text())["runs"]
    rows: dict[str, tuple[float, float]] = {}
    for workload in WORKLOADS:
        done = [r for r in runs if r["workload"] == workload and r.get("ok")]
        if done:
            rows[workload] = (statistics.median(r["rate"] for r in done),
                              statistics.median(r["cpu_us_per_record"] for r in done
                                                if "cpu_us_per_record" in r))
    print(f"\n{'workload':<18} {'records/s':>10} {'CPU µs/rec':>11} {'vs baseline (CPU)':>18}")
    for workload, (rate, cpu) in rows.items():
        base = rows.get(BASELINE.get(workload, ""))
        ratio = f"{cpu / base[1]:.2f}x {BASELINE[workload]}" if base else ""
        print(f"{workload:<18} {rate:>10.0f} {cpu:>11.2f} {ratio:>18}")
    print(f"(medians of {args.repeats}; results in {results})")


if __name__ == "__main__":
    main()
