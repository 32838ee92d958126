package io.eoflow.bench;

import com.fasterxml.jackson.core.StreamWriteFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.cfg.JsonNodeFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Locale;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The bench's two workloads (bench/apps/_common.py), with the same input and output as the
 * Python systems: string keys, JSON values.
 *
 * <ul>
 *   <li>passthrough: the value parsed, {@code pad} upper-cased, written back as JSON;
 *   <li>count: {@code counts[key] += 1} in a persistent (RocksDB) key-value store with a
 *       changelog, emitting {@code {"ts": value.ts, "count": n}}.
 * </ul>
 *
 * <p>Floats are read as BigDecimal and written plain, so {@code ts} comes out with the digits
 * it went in with, as Python's json round trip does.
 */
final class Topologies {
    static final ObjectMapper JSON = JsonMapper.builder()
            .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS)
            .disable(JsonNodeFeature.STRIP_TRAILING_BIGDECIMAL_ZEROES)
            .enable(StreamWriteFeature.WRITE_BIGDECIMAL_AS_PLAIN)
            .build();
    private static volatile boolean marked;

    private Topologies() {}

    static Topology passthrough(String in, String out) {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(in, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .mapValues(Topologies::upperPad)
                .to(out, Produced.with(Serdes.String(), Serdes.ByteArray()));
        return b.build();
    }

    /** The DSL count: groupByKey (no repartition: the key is unchanged) then aggregate. */
    static Topology count(String in, String out) {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(in, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .groupByKey(Grouped.with(Serdes.String(), Serdes.ByteArray()))
                .aggregate(() -> Counted.ZERO, (key, value, agg) -> agg.next(tsOf(value)),
                           Materialized.<String, Counted, KeyValueStore<Bytes, byte[]>>as("counts")
                                   .withKeySerde(Serdes.String())
                                   .withValueSerde(new Counted.Serde()))
                .toStream()
                .mapValues(Topologies::countedJson)
                .to(out, Produced.with(Serdes.String(), Serdes.ByteArray()));
        return b.build();
    }

    static byte[] upperPad(byte[] value) {
        markFirst();
        try {
            ObjectNode v = (ObjectNode) JSON.readTree(value);
            v.put("pad", v.get("pad").asText().toUpperCase(Locale.ROOT));
            return JSON.writeValueAsBytes(v);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The value's {@code ts} as the JSON text it was written with. */
    static String tsOf(byte[] value) {
        markFirst();
        try {
            JsonNode ts = JSON.readTree(value).get("ts");
            return ts.isBigDecimal() ? ts.decimalValue().toPlainString() : ts.asText();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static byte[] countedJson(Counted c) {
        ObjectNode v = JSON.createObjectNode();
        v.put("ts", new BigDecimal(c.ts()));
        v.put("count", c.count());
        try {
            return JSON.writeValueAsBytes(v);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Once: the wall-clock time the first input reached user code, for the driver's clock. */
    static void markFirst() {
        if (marked) {
            return;
        }
        marked = true;
        String path = System.getenv("BENCH_MARK");
        if (path == null || path.isEmpty()) {
            return;
        }
        Instant now = Instant.now();
        double seconds = now.getEpochSecond() + now.getNano() / 1e9;
        try {
            Files.writeString(Path.of(path), Double.toString(seconds), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
