"""``vj-webcam``: live face detection on a camera, a video, a folder of images or a demo.

The program reads as a pipeline: :mod:`.sources` (frames from a camera, file, folder or
the built-in :mod:`.demo`) -> :mod:`.detectors` (the cascade, optionally verified) ->
:mod:`.overlay` (boxes and the HUD) -> :mod:`.window` / :mod:`.output` (screen, video,
JSON Lines); :mod:`.loop` drives one frame at a time and :mod:`.cli` parses the options.
"""
