"""One module per figure; each ``measure(bench)`` records its figures in ``bench.figures``."""
