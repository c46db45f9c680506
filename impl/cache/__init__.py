"""The key cache: packed codes, the codecs that write and score them, the store that holds a
layer's keys, and the transformers integration."""
