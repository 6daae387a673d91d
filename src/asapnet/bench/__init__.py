"""Runtime benchmarks of ASAP-Net against the baselines (``asapnet bench``)."""
