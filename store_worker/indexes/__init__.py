"""The in-memory indexes over the memories table: catalogue, BM25 postings, vectors; their loading and snapshot."""
