"""The key cache on real models: calibrating codecs, their artifacts on disk, and perplexity and
generation runs with the cache beside full-precision keys."""
