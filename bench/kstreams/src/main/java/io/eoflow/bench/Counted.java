package io.eoflow.bench;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serializer;

/**
 * A key's running count and the {@code ts} of its latest input: what the count emits. The
 * store holds it as an 8-byte count followed by the UTF-8 text of ts.
 */
record Counted(long count, String ts) {
    static final Counted ZERO = new Counted(0, "0");

    Counted next(String latestTs) {
        return new Counted(count + 1, latestTs);
    }

    static final class Serde implements org.apache.kafka.common.serialization.Serde<Counted> {
        @Override
        public Serializer<Counted> serializer() {
            return (topic, c) -> {
                byte[] ts = c.ts().getBytes(StandardCharsets.UTF_8);
                return ByteBuffer.allocate(8 + ts.length).putLong(c.count()).put(ts).array();
            };
        }

        @Override
        public Deserializer<Counted> deserializer() {
            return (topic, data) -> {
                if (data == null) {
                    return null;
                }
                ByteBuffer b = ByteBuffer.wrap(data);
                long count = b.getLong();
                return new Counted(count, new String(data, 8, data.length - 8,
                                                     StandardCharsets.UTF_8));
            };
        }
    }
}
