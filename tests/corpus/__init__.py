"""The bad-input corpus: broken raw files and degenerate store records, each pushed
through the reader or stage it targets (``generate.build_corpus``), and the tests that
pin every outcome (``test_corpus``)."""
