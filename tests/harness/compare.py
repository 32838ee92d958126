"""Every named scenario against one system (or several), one after the other, as a table.

    python -m tests.harness.compare --system faust --records 3000 --seed 1
    python -m tests.harness.compare --system eoflow --system faust --bootstrap 127.0.0.1:58092

Not part of ``make test``: it is how docs/reliability.md was produced (``make
reliability-faust``). Scenarios run sequentially (the machine is shared); each uses the
broker given by ``--bootstrap`` (or one started here), except ``broker_restart``, which
always starts and stops a broker of its own. A scenario that raises or exceeds
``--scenario-timeout`` is an ERROR row. Scenario settings follow the e2e profile
(tests/e2e): ``scale_1_3_1`` and ``zombie`` use a 3 s session timeout and a lower rate.
For faust, ``fault_points`` is its kill -9 variant (faust has no fault points), and the
checks that read eoflow's stores are skipped (see run.py); "dlq-missing" counts the
poison inputs that never reached a dead-letter topic (included in "losses").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.kafka.kafkactl import KafkaBroker

from .run import RunConfig, ScenarioResult
from .scenarios import SCENARIOS, run_scenario
from .workers import SYSTEMS

__all__ = ["Row", "main"]

#: Per-scenario settings, as in tests/e2e/test_exactly_once.py.
OVERRIDES: dict[str, dict[str, Any]] = {
    "scale_1_3_1": {"session_timeout": 3.0, "rate": 400.0},
    "zombie": {"session_timeout": 3.0, "transaction_timeout": 10.0, "rate": 300.0},
}
#: broker_restart last: it is the one that needs a broker of its own.
ORDER = ("random_kills", "fault_points", "scale_1_3_1", "zombie", "slow_agent", "poison",
         "too_large", "broker_restart")
COLUMNS = ("system", "scenario", "verdict", "records", "processed", "dead-lettered", "kills",
           "duplicates", "losses", "dlq-missing", "order", "aggregates", "table",
           "unfinished", "seconds", "notes")


@dataclass
class Row:
    system: str
    scenario: str
    verdict: str = "ERROR"
    counts: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    dlq_missing: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    report: str = ""

    def cells(self) -> list[str]:
        c = self.counts
        def n(key: str) -> str:
            return str(c[key]) if key in c else "-"
        return [self.system, self.scenario, self.verdict, n("records"), n("processed"),
                n("dead_lettered"), str(self.kills), n("duplicates"), n("losses"),
                str(self.dlq_missing) if c else "-", n("order_violations"),
                n("aggregate_mismatches"), n("table_mismatches"), n("unfinished"),
                f"{self.seconds:.0f}", "; ".join(self.notes)]


def _summarize(text: str, limit: int = 160) -> str:
    """The first line (a worker's log tail follows it), on one line, cut at ``limit``."""
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _row(system: str, scenario: str, result: ScenarioResult, dlq: str) -> Row:
    o = result.oracle
    row = Row(system, scenario, "OK" if result.ok else "FAIL", o.counts(), result.kills,
              seconds=result.seconds, report=result.report())
    for v in o.violations:
        m = re.match(rf"losses \+(\d+): {re.escape(dlq)}: inputs missing", v)
        if m:
            row.dlq_missing += int(m.group(1))
    if system == "faust" and scenario == "fault_points":
        row.notes.append("kill -9 variant (no fault points in faust)")
    row.notes += [_summarize(p) for p in result.problems]
    row.notes += [_summarize(n) for n in result.notes]
    return row


async def _one(system: str, scenario: str, cfg: RunConfig, timeout: float) -> Row:
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(run_scenario(scenario, cfg), timeout)
    except Exception as exc:  # an ERROR row; the traceback goes into the report
        row = Row(system, scenario, seconds=time.monotonic() - started,
                  notes=[_summarize(f"{type(exc).__name__}: {exc}")],
                  report=traceback.format_exc())
        return row
    return _row(system, scenario, result, f"{cfg.name}-dlq")


def run_all(systems: list[str], scenarios: list[str], args: argparse.Namespace,
            workdir: Path, bootstrap: str) -> list[Row]:
    rows = []
    for system in systems:
        for scenario in scenarios:
            name = f"{system}-{scenario.replace('_', '-')}-{int(time.time())}"
            own = KafkaBroker(datadir=workdir / f"kafka-{name}") \
                if scenario == "broker_restart" else None
            try:
                if own is not None:
                    own.start(timeout=120)
                cfg = RunConfig(own.bootstrap if own else bootstrap, workdir, name,
                                records=args.records, seed=args.seed, rate=args.rate,
                                broker=own, system=system)
                for key, value in OVERRIDES.get(scenario, {}).items():
                    setattr(cfg, key, value)
                print(f"compare: {system} {scenario} ({name}) ...", flush=True)
                row = asyncio.run(_one(system, scenario, cfg, args.scenario_timeout))
            finally:
                if own is not None:
                    own.stop()
            print(row.report, flush=True)
            print(f"compare: {system} {scenario}: {row.verdict} in {row.seconds:.0f}s",
                  flush=True)
            rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", action="append", choices=sorted(SYSTEMS),
                        help="system under test; repeat for several (default: eoflow)")
    parser.add_argument("--scenario", action="append", choices=ORDER,
                        help="run only this scenario; repeat for several (default: all)")
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=600.0)
    parser.add_argument("--bootstrap", help="use this broker (default: start one)")
    parser.add_argument("--workdir", help="keep logs and data here (default: a temp dir)")
    parser.add_argument("--scenario-timeout", type=float, default=900.0)
    parser.add_argument("--json", help="also write the rows (with full reports) here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up workers and brokers on SIGTERM
    systems = args.system or ["eoflow"]
    scenarios = [s for s in ORDER if s in (args.scenario or ORDER)]
    assert set(ORDER) == set(SCENARIOS), "compare.ORDER is missing a scenario"
    with tempfile.TemporaryDirectory(prefix="eo-compare-") as tmp_dir:
        workdir = Path(args.workdir or tmp_dir)
        workdir.mkdir(parents=True, exist_ok=True)
        broker = None if args.bootstrap else KafkaBroker(datadir=workdir / "kafka")
        try:
            if broker is not None:
                broker.start(timeout=120)
            bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
            rows = run_all(systems, scenarios, args, workdir, bootstrap)
        finally:
            if broker is not None:
                broker.stop()
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    print(f"\nrecords={args.records} seed={args.seed} rate={args.rate}")
    print(table(rows))
    return 0 if all(r.verdict == "OK" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
