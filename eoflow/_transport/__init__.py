"""Everything that speaks Kafka: the transactional producer, the group consumer, admin."""
