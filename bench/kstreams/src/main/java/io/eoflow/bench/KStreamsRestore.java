package io.eoflow.bench;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * Kafka Streams' restore and restart for bench/restore.py (issue 16): one start of a count
 * app, timed, then a clean close.
 *
 * <pre>
 *   BENCH_BOOTSTRAP=host:port BENCH_APP_ID=id BENCH_IN=topic BENCH_DATADIR=dir \
 *     java @bench/kstreams/target/java.args io.eoflow.bench.KStreamsRestore
 * </pre>
 *
 * <p>The topology is {@code groupByKey().count()} into the RocksDB store {@code counts}
 * (String keys, Long values: its changelog {@code <app id>-counts-changelog} holds UTF-8 keys
 * and 8-byte big-endian longs, what the driver pre-fills), exactly_once_v2, one stream
 * thread, record cache off ({@link KStreamsBench#config}). BENCH_INSTANCE_ID, if set, is the
 * consumer's {@code group.instance.id} (static membership): Streams does not leave the group
 * when it closes, so without it the next start waits for the closed member's session timeout
 * (45 s) before the group rebalances; a static member that comes back takes its place at once.
 *
 * <ol>
 *   <li>{@code streams.start()}; the clock starts just before it.
 *   <li>A {@link StateRestoreListener} sums the records restored, from the first
 *       {@code onRestoreStart} to the last {@code onRestoreEnd} (none with a current store).
 *   <li>The first count the topology forwards (the driver produced one input before
 *       the start) stops the clock: start to first event. A task processes as soon as its
 *       own stores are restored, so that can come before the other tasks' restores end.
 *   <li>State RUNNING: every task restored ({@code running_s}). The app waits for both.
 *   <li>{@code close()}: a clean close writes the checkpoint file, so the next start with
 *       the same state dir finds its store current.
 *   <li>One JSON object on stdout; exit status 0, or 1 when no event came within
 *       BENCH_TIMEOUT seconds (default 600) or the stream thread died.
 * </ol>
 */
public final class KStreamsRestore {
    private KStreamsRestore() {}

    public static void main(String[] args) throws InterruptedException {
        double timeout = Double.parseDouble(KStreamsBench.env("BENCH_TIMEOUT", "600"));
        CountDownLatch done = new CountDownLatch(2);  // the first count, and RUNNING
        AtomicLong firstEvent = new AtomicLong();
        AtomicLong running = new AtomicLong();
        AtomicReference<Throwable> died = new AtomicReference<>();
        Topology topology = count(KStreamsBench.env("BENCH_IN", "bench-in"), () -> {
            if (firstEvent.compareAndSet(0, System.nanoTime())) {
                done.countDown();
            }
        });
        Restores restores = new Restores();
        Properties config = KStreamsBench.config(false);
        String instance = KStreamsBench.env("BENCH_INSTANCE_ID", "");
        if (!instance.isEmpty()) {  // static membership; Streams appends "-<thread index>"
            config.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instance);
        }
        KafkaStreams streams = new KafkaStreams(topology, config);
        streams.setGlobalStateRestoreListener(restores);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING && running.compareAndSet(0, System.nanoTime())) {
                done.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            died.set(e);
            done.countDown();
            done.countDown();
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(
                () -> streams.close(Duration.ofSeconds(20)), "bench-shutdown"));
        long started = System.nanoTime();
        streams.start();
        boolean seen = done.await(Math.round(timeout * 1000), TimeUnit.MILLISECONDS);
        long closing = System.nanoTime();
        boolean closed = streams.close(Duration.ofSeconds(60));
        long end = System.nanoTime();

        ObjectNode out = Topologies.JSON.createObjectNode();
        restores.report(out, started);
        out.put("first_event_s", seconds(started, firstEvent.get()));
        if (firstEvent.get() != 0) {  // wall clock, for the driver's launch -> first event
            out.put("first_event_epoch", System.currentTimeMillis() / 1e3
                    - (System.nanoTime() - firstEvent.get()) / 1e9);
        }
        out.put("running_s", seconds(started, running.get()));
        out.put("close_s", (end - closing) / 1e9);
        out.put("closed_cleanly", closed);
        if (died.get() != null) {
            out.put("error", died.get().toString());
        } else if (!seen) {
            out.put("error", "no event or not RUNNING within " + timeout + "s");
        }
        System.out.println(out);
        System.out.flush();
        System.exit(seen && died.get() == null && closed ? 0 : 1);
    }

    /** Counts per key in store {@code counts}; {@code onCount} hears of each count. */
    static Topology count(String in, Runnable onCount) {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(in, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .groupByKey(Grouped.with(Serdes.String(), Serdes.ByteArray()))
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts")
                               .withKeySerde(Serdes.String())
                               .withValueSerde(Serdes.Long()))
                .toStream()
                .foreach((key, n) -> onCount.run());
        return b.build();
    }

    /** Seconds from {@code from} to {@code to} (System.nanoTime), or null if {@code to} is 0. */
    private static Double seconds(long from, long to) {
        return to == 0 ? null : (to - from) / 1e9;
    }

    /** Every restore of every store partition, from the first start to the last end. */
    private static final class Restores implements StateRestoreListener {
        private long firstStart;
        private long lastEnd;
        private long records;
        private int partitions;
        private int batches;

        @Override
        public synchronized void onRestoreStart(TopicPartition tp, String store, long from,
                                                long to) {
            if (firstStart == 0) {
                firstStart = System.nanoTime();
            }
        }

        @Override
        public synchronized void onBatchRestored(TopicPartition tp, String store, long end,
                                                 long restored) {
            batches++;
        }

        @Override
        public synchronized void onRestoreEnd(TopicPartition tp, String store, long restored) {
            lastEnd = System.nanoTime();
            records += restored;
            partitions++;
        }

        synchronized void report(ObjectNode out, long started) {
            out.put("restored", records);
            out.put("restored_partitions", partitions);
            out.put("restore_batches", batches);
            out.put("restore_s", lastEnd == 0 ? null : seconds(firstStart, lastEnd));
            out.put("restore_began_s", seconds(started, firstStart));
        }
    }
}
