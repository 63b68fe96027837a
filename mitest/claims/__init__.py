"""Claims: Effects, their ``expect_*`` claims, the statistics that decide them and the Verdicts.
numpy, scipy and pandas only (no torch)."""
