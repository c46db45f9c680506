"""The data layer: the offline assets (model table, fetching, GGUF conversion, loading), the text
corpus and its splits, and running the models for keys and perplexity."""
