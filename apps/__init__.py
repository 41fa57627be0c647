"""Command-line programs of the project (``vj-webcam``, ``vj-detect``, ``vj-train-*``, ...)."""

# Start Numba's threads before any program here imports PyTorch, so that the process
# has one OpenMP runtime (see vj.threads).
import vj  # noqa: F401
