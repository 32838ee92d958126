"""The worker runtime: dispatch, the commit cycle, rebalancing, agent supervision."""
