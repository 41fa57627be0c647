"""``vj-bench``: benchmarks, each against a peer measured in the same run.

:mod:`.detect` (detection vs OpenCV 4), :mod:`.features` (Haar features vs scikit-image),
:mod:`.boosting` (one boosting round), :mod:`.dynamic` (SkipNet and IDK cascades: FLOPs and
wall-clock); :mod:`.cli` dispatches the sub-commands.
"""
