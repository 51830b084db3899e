"""Search: hybrid retrieval over the indexes, score fusion and recency, time expressions."""
