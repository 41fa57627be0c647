"""The face verifier: a Haar cascade's windows re-checked by an IDK cascade of CNNs.

Data flow, one module per step: :mod:`.crops` (windows -> normalised crops) ->
:mod:`.verifier` (tiny CNN, then a SkipNet for the crops it is unsure of) ->
:mod:`.pipeline` (cascade -> crops -> verifier -> grouping: :class:`VerifiedDetector`).
Training: :mod:`.sources` (face and non-face sources, splits, jitter), :mod:`.crop_sets`
(labelled crop sets from sources and cascade windows), :mod:`.scenes` (test scenes),
:mod:`.training` (training, hard negatives, thresholds).
"""
