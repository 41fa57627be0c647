"""The models this project ships (``vj_data`` once installed), each with a model card.

``frontalface.json`` (the Haar cascade, read by :mod:`vj`), ``verifier_*.pt`` (the face
verifiers, read by :mod:`vj_dynamic.face`). Found with :mod:`importlib.resources`, so they
load the same from a checkout, an editable install, a wheel or an sdist.
"""
