"""The dynamic-network benchmark: SkipNet and IDK cascades against dense models.

:mod:`.datasets` (the data: digits upsampled, or face crops), :mod:`.config` (settings),
:mod:`.training`, :mod:`.skipnet_measurement`, :mod:`.idk_measurement`, :mod:`.report`,
and :mod:`.benchmark`, which runs them in order.
"""
