"""Profile one eoflow bench run with py-spy and print the hot spots (file:line).

    python -m bench.profile_eoflow --workload count --guarantee exactly_once --records 300000

Starts its own broker, pre-produces the input, runs `eoflow worker -A bench.apps.eoflow_app`
under `py-spy record --format raw` until the expected output is committed, then prints the
top frames by self time and the eoflow frames by inclusive time. The flame data stays in
bench-results/profile-<stamp>/ (speedscope/flamegraph tools read the raw file).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.run import (
    BIN,
    ROOT,
    WINDOWED,
    OutputReader,
    create_topics,
    delete_topics_containing,
    log,
    preproduce,
)


def hot_spots(raw: Path, top: int = 25) -> str:
    """Collapsed stacks -> self time per frame and inclusive time per eoflow/aiokafka frame."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        self_t[frames[-1]] += count
        for f in set(frames):
            if "eoflow/" in f or "bench/apps" in f:
                incl[f] += count
    out = [f"samples: {total}", "", f"top {top} frames by self time:"]
    for f, c in self_t.most_common(top):
        out.append(f"  {100 * c / total:5.1f}%  {f}")
    out += ["", f"top {top} eoflow frames by inclusive time:"]
    for f, c in incl.most_common(top):
        out.append(f"  {100 * c / total:5.1f}%  {f}")
    return "\n".join(out)


async def amain(args: argparse.Namespace, bootstrap: str, outdir: Path) -> None:
    in_topic = f"bench-in.{args.records}"
    await preproduce(bootstrap, in_topic, args.records, 8)
    name = f"profile.{args.workload}.{args.guarantee}.{int(time.time())}"
    out_topic = f"out.{name}"
    await create_topics(bootstrap, [out_topic], 8)
    reader = OutputReader(bootstrap, out_topic, 8)
    await reader.start()
    env = dict(os.environ, BENCH_BOOTSTRAP=bootstrap, BENCH_IN=in_topic, BENCH_OUT=out_topic,
               BENCH_APP_ID=name, BENCH_WORKLOAD=args.workload,
               BENCH_INTERVAL=str(args.interval), BENCH_GUARANTEE=args.guarantee,
               BENCH_DATADIR=str(outdir / "data"), PYTHONPATH=str(ROOT))
    raw = outdir / f"{args.workload}-{args.guarantee}.raw.txt"
    cmd = [str(BIN / "py-spy"), "record", "--format", "raw", "--rate", "200", "--nonblocking",
           "-o", str(raw), "--", str(BIN / "eoflow"), "worker", "-A",
           "bench.apps.eoflow_app", "--loglevel", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=open(outdir / "system.log", "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)
    try:
        expected = args.records * WINDOWED.get(args.workload, 1)
        t = await reader.wait_for(expected, 600, lambda: proc.poll() is None)
        log(f"expected output reached: {t is not None}, read {reader.count}")
    finally:
        # SIGTERM the worker (the child of py-spy), so py-spy writes its output and exits.
        for child in _children(proc.pid):
            os.kill(child, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        await reader.stop()
        await delete_topics_containing(bootstrap, name)
    report = hot_spots(raw)
    (outdir / f"{args.workload}-{args.guarantee}.hotspots.txt").write_text(report)
    print(report)


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="count", choices=["passthrough", "count", *WINDOWED])
    ap.add_argument("--guarantee", default="exactly_once",
                    choices=["exactly_once", "at_least_once"])
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--bootstrap")
    args = ap.parse_args()
    outdir = ROOT / "bench-results" / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    outdir.mkdir(parents=True, exist_ok=True)
    broker = None
    bootstrap = args.bootstrap
    if not bootstrap:
        sys.path.insert(0, str(ROOT))
        from tools.kafka.kafkactl import KafkaBroker

        broker = KafkaBroker(port=None, datadir=outdir / "kafka", heap="1g")
        broker.start()
        bootstrap = broker.bootstrap
    try:
        asyncio.run(amain(args, bootstrap, outdir))
    finally:
        if broker is not None:
            broker.stop()
            subprocess.run(["rm", "-rf", str(broker.data_dir)], check=False)


if __name__ == "__main__":
    main()
