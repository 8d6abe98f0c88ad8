"""Thread settings for training on a shared CPU; import before numpy and torch.

Measured on the 2-core machine under load from other work: with OpenMP's default
(spinning) wait policy two torch threads burn ~4x the CPU time per step that they do
with passive waiting, and OpenBLAS's own threads add to it.  Passive OpenMP waits and
single-threaded OpenBLAS inside torch's threads cost ~1.5 CPU-s per base step."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
