package io.eoflow.bench;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;

/**
 * Kafka Streams in the eoflow bench: one stream thread, exactly_once_v2, the run's commit
 * interval, configured like the Python apps from BENCH_* environment variables
 * (bench/apps/_common.py).
 *
 * <pre>
 *   java @bench/kstreams/target/java.args io.eoflow.bench.KStreamsBench --cache=off|default
 * </pre>
 *
 * {@code --cache=off} sets statestore.cache.max.bytes=0: every input record gives one output
 * record, as in every other system. {@code --cache=default} keeps Kafka Streams' default
 * record cache (10 MiB): the count emits the latest count of a key when the cache is flushed
 * (at each commit) or evicts it, so there are fewer outputs than inputs.
 *
 * <p>SIGTERM (the driver's stop) runs the shutdown hook, which closes the client; a stream
 * thread that dies shuts the client down and the process exits with status 1.
 */
public final class KStreamsBench {
    private KStreamsBench() {}

    public static void main(String[] args) throws InterruptedException {
        boolean cache = parseCache(args);
        String workload = env("BENCH_WORKLOAD", "passthrough");
        String in = env("BENCH_IN", "bench-in");
        String out = env("BENCH_OUT", "bench-out");
        Topology topology = switch (workload) {
            case "passthrough" -> Topologies.passthrough(in, out);
            case "count" -> Topologies.count(in, out);
            default -> throw new IllegalArgumentException("BENCH_WORKLOAD: " + workload);
        };
        KafkaStreams streams = new KafkaStreams(topology, config(cache));
        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean failed = new AtomicBoolean();
        streams.setUncaughtExceptionHandler(e -> {
            failed.set(true);
            System.err.println("stream thread died: " + e);
            e.printStackTrace();
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(20));
            stopped.countDown();
        }, "bench-shutdown"));
        streams.start();
        stopped.await();
        if (failed.get() || streams.state() == KafkaStreams.State.ERROR) {
            streams.close(Duration.ofSeconds(20));
            System.exit(1);
        }
    }

    static Properties config(boolean cache) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, env("BENCH_APP_ID", "bench"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("BENCH_BOOTSTRAP", "127.0.0.1:49092"));
        String guarantee = env("BENCH_GUARANTEE", "exactly_once");
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
              guarantee.equals("exactly_once") ? StreamsConfig.EXACTLY_ONCE_V2
                                                : StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        double interval = Double.parseDouble(env("BENCH_INTERVAL", "1.0"));
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Math.round(interval * 1000));
        p.put(StreamsConfig.STATE_DIR_CONFIG, env("BENCH_DATADIR", "./bench-data"));
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);  // one broker
        if (!cache) {
            p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);
        }
        return p;
    }

    private static boolean parseCache(String[] args) {
        for (String a : args) {
            if (a.equals("--cache=off")) {
                return false;
            }
            if (a.equals("--cache=default")) {
                return true;
            }
        }
        throw new IllegalArgumentException("usage: KStreamsBench --cache=off|default");
    }

    static String env(String name, String fallback) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? fallback : v;
    }
}
