"""One harness run: topics, driver, watcher and workers of one app, then the oracle.

A scenario is ``async with Run(config) as run:`` + starting/killing workers + ``await
run.finish()``, which lets the workers drain every input, stops them with SIGTERM and
returns the :class:`ScenarioResult` (oracle verdict plus what happened).

``RunConfig.cluster`` runs on a replicated Kafka cluster (``tools.kafka`` ``KafkaCluster``,
three brokers): the harness creates its topics with the cluster's replication factor and
the workers create the changelog with it too (``EOFLOW_REPLICATION_FACTOR``); the cluster
scenarios (:mod:`.cluster_scenarios`) kill and restart its nodes.

``RunConfig.system`` picks the system under test: ``"eoflow"`` (default) or ``"faust"``
(faust-streaming, exactly_once, ``faust_app``). Faust has no dead-letter topic and no
eoflow store, so for it "drained" means every processable input echoed and aggregated,
and the oracle skips the checks that read eoflow's stores (restore, live stores); the
dead-letter check still runs and counts poison inputs that never got there as losses.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from eoflow.testing import create_topics

from . import features_oracle, oracle
from .driver import Driver, Input, generate_inputs
from .features_oracle import FeatureTopics
from .oracle import OracleResult, Topics
from .watch import Watcher
from .workers import Workers

__all__ = ["Broker", "Run", "RunConfig", "ScenarioResult"]

#: The echo topic rejects records above this; ``large`` inputs emit more (see eo_app).
ECHO_MAX_MESSAGE_BYTES = 64 * 1024
LARGE_BYTES = 200 * 1024


class Broker(Protocol):
    @property
    def bootstrap(self) -> str: ...

    def restart(self, timeout: float = 60.0) -> Any: ...


class Cluster(Protocol):
    """What the harness uses of ``tools.kafka.kafkactl.KafkaCluster``."""

    replication_factor: int

    @property
    def bootstrap(self) -> str: ...

    def node(self, node_id: int) -> Any: ...
    def leader_of(self, topic: str, partition: int = 0) -> int: ...
    def coordinator_of(self, kind: str, key: str, timeout: float = 30.0) -> int: ...
    def wait_in_sync(self, timeout: float = 60.0) -> None: ...


@dataclass
class RunConfig:
    bootstrap: str
    workdir: Path
    name: str
    records: int = 3000
    seed: int = 1
    partitions: int = 4
    keys: int = 200
    rate: float | None = 600.0
    commit_interval: float = 0.1
    session_timeout: float = 6.0
    transaction_timeout: float = 20.0
    slow_seconds: float = 0.0
    marks: dict[str, int] = field(default_factory=dict)
    drain_timeout: float = 120.0
    broker: Broker | None = None
    system: str = "eoflow"
    #: More ``EO_*`` settings of the app under test (patterns it should exercise).
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Which app: ``eo`` (eo_app, the default) or ``features`` (features_app: windows,
    #: timers, group_by, take, sinks, global tables; judged by features_oracle).
    app: str = "eo"
    #: A replicated cluster to run on (``bootstrap`` is then its bootstrap list).
    cluster: Cluster | None = None

    @property
    def replication_factor(self) -> int:
        return self.cluster.replication_factor if self.cluster is not None else 1

    def app_env(self) -> dict[str, str]:
        replicated = ({"EOFLOW_REPLICATION_FACTOR": str(self.replication_factor)}
                      if self.replication_factor > 1 else {})
        return {**replicated, **self.extra_env,
            "EO_APP_ID": self.name, "EO_PREFIX": self.name,
            "EO_PARTITIONS": str(self.partitions),
            "EO_BROKER": f"kafka://{self.bootstrap}", "EO_BROKER_ADDR": self.bootstrap,
            "EO_COMMIT_INTERVAL": str(self.commit_interval),
            "EO_SESSION_TIMEOUT": str(self.session_timeout),
            "EO_TXN_TIMEOUT": str(self.transaction_timeout),
            "EO_SLOW_SECONDS": str(self.slow_seconds), "EO_LARGE_BYTES": str(LARGE_BYTES),
        }


@dataclass
class ScenarioResult:
    name: str
    oracle: OracleResult
    seconds: float = 0.0
    kills: int = 0
    faults_fired: list[str] = field(default_factory=list)
    rebalances: int = 0
    broker_restarts: int = 0
    #: Cluster runs: brokers killed (SIGKILL) or stopped, network faults injected.
    broker_kills: int = 0
    network_faults: int = 0
    #: Quiescent cuts checked for atomicity mid-run (:func:`.cluster.quiescent_cut`).
    cuts: int = 0
    problems: list[str] = field(default_factory=list)  # drain timeouts, crashed workers
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure
    workers: str = ""

    @property
    def ok(self) -> bool:
        return self.oracle.ok and not self.problems

    def report(self) -> str:
        lines = [f"scenario {self.name}: {'OK' if self.ok else 'FAILED'} in "
                 f"{self.seconds:.0f}s; kills={self.kills} faults={self.faults_fired} "
                 f"rebalances={self.rebalances} broker_restarts={self.broker_restarts}"
                 + (f" broker_kills={self.broker_kills} network_faults={self.network_faults}"
                    if self.broker_kills or self.network_faults else ""),
                 self.oracle.report()]
        lines += [f"problem: {p}" for p in self.problems]
        lines += [f"note: {n}" for n in self.notes]
        if not self.ok:
            lines.append("workers:\n" + self.workers)
        return "\n".join(lines)


class Run:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        features = config.app == "features"
        self.topics = (FeatureTopics if features else Topics)(config.name, config.name)
        self.rng = random.Random(config.seed)
        self.inputs: list[Input] = generate_inputs(config.records, config.seed,
                                                   keys=config.keys, marks=config.marks)
        self.driver = Driver(config.bootstrap, self.topics.input, self.inputs, config.rate)
        self.watcher = Watcher(config.bootstrap, self.topics)
        self.workers = Workers(config.workdir / config.name, config.app_env(),
                               system=config.system,
                               app=f"tests.harness.{'features' if features else 'eo'}_app")
        self.result = ScenarioResult(config.name, OracleResult())
        #: Atomicity findings of mid-run cuts (:mod:`.cluster`), added to the oracle's.
        self.cut_findings: list[tuple[str, int, str, list[Any]]] = []
        self._started = time.monotonic()

    async def __aenter__(self) -> Run:
        t, n = self.topics, self.config.partitions
        up_front = (t.created_up_front(n) if isinstance(t, FeatureTopics) else
                    {t.input: n, t.echo: n, t.by_key: n, t.aggregates: n, t.dlq: 1})
        config: dict[str, dict[str, str]] = {
            t.echo: {"max.message.bytes": str(ECHO_MAX_MESSAGE_BYTES)}}
        if isinstance(t, FeatureTopics):  # event times of 2023 flow to every output
            config = {name: {**config.get(name, {}), "retention.ms": "-1"}
                      for name in up_front}
        await create_topics(self.config.bootstrap, up_front, config,
                            replication_factor=self.config.replication_factor)
        await self.watcher.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.workers.close()
        await self.watcher.__aexit__()
        if self.driver._task is not None and not self.driver._task.done():
            self.driver._task.cancel()

    def problem(self, text: str) -> None:
        self.result.problems.append(text)

    async def sleep(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high))

    async def restart_broker(self) -> None:
        if self.config.broker is None:
            raise RuntimeError("this scenario needs a broker it can restart")
        await asyncio.to_thread(self.config.broker.restart)
        self.result.broker_restarts += 1

    def _drained(self) -> bool:
        if self.config.system == "eoflow":
            return self.watcher.drained()
        w = self.watcher  # no dead-letter topic: only the processable inputs can drain
        return w.ok <= w.echoed and w.ok <= w.aggregated

    async def finish(self) -> ScenarioResult:
        """Drain all inputs, stop the workers cleanly, run the oracle."""
        cfg, result = self.config, self.result
        try:
            await self.driver.wait(cfg.drain_timeout)
            await self.watcher.wait_for(self._drained, cfg.drain_timeout, "drained")
        except TimeoutError as exc:
            self.problem(f"not drained: {exc}")
            for w in self.workers.alive():
                self.workers.dump_tasks(w)  # their stacks go to their logs
            await asyncio.sleep(1)
        for w in self.workers.procs:
            if w.returncode not in (None, 0, -9) and not w.fault_fired():
                self.problem(f"worker {w.instance_id} exited with {w.returncode}:\n"
                             f"{w.tail(15)}")
        try:
            codes = await asyncio.to_thread(self.workers.term_all)
        except TimeoutError as exc:
            codes = {}
            self.problem(str(exc))
        bad = {k: v for k, v in codes.items() if v != 0}
        if bad:
            self.problem(f"workers did not exit cleanly on SIGTERM: {bad}")
        self.workers.close()
        eoflow = cfg.system == "eoflow"
        if isinstance(self.topics, FeatureTopics):
            result.oracle = await features_oracle.check(cfg.bootstrap, self.topics,
                                                        cfg.partitions)
        else:
            result.oracle = await oracle.check(cfg.bootstrap, self.topics, self.inputs,
                                               self.workers.datadirs() if eoflow else (),
                                               restore=eoflow,
                                               group=cfg.name if eoflow else None)
        for finding in self.cut_findings:
            result.oracle.add(*finding)
        result.kills = self.workers.kills
        result.faults_fired = [w.fault for w in self.workers.procs
                               if w.fault and w.fault_fired()]
        result.rebalances = sum(len(re.findall(r"assigned \d+ partitions", w.log()))
                                for w in self.workers.procs)
        result.workers = self.workers.describe()
        result.seconds = time.monotonic() - self._started
        return result
