"""The dynamic-network benchmark: SkipNet and IDK cascades against dense models.

:mod:`.datasets` (the data: digits upsampled, or face crops), :mod:`.benchmark` (train,
tune, time and report).
"""
