"""Search: lexical (BM25) and semantic retrieval over the item catalog, updated live."""
