"""The study: every measurement behind the write-up's eleven widgets, on real models, with
train / held-out / out-of-domain honesty. `betaspec study` runs it; `betaspec explore` shows it."""
