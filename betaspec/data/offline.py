"""``transformers`` imported with the model hub switched off, and its progress bars under our control."""

from __future__ import annotations

import os
from contextlib import contextmanager
from types import ModuleType


def offline_transformers() -> ModuleType:
    """``transformers``, imported with the hub switched off (set before the first import)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    return transformers


@contextmanager
def transformers_progress(tf: ModuleType, enabled: bool):
    """Show transformers' own progress bars (GGUF dequantisation, weight loading) only if ``enabled``."""
    logging = tf.utils.logging
    was = logging.is_progress_bar_enabled()
    if not enabled:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            logging.enable_progress_bar()
