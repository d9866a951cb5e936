"""The lecture's ops written to be read: plain NumPy (CuPy through ``xp``), one short function
each, with its math, its shapes and the lecture section it illustrates in the docstring.

These functions work on arrays, not Tensors: each forward has a ``*_backward`` beside it that
returns the gradients. ``minivision.functional`` and ``minivision.ops`` wrap them as
differentiable ops and run them when the reference switch is on (``MINIVISION_REFERENCE=1``,
``mv.use_reference(True)``, see ``minivision.dispatch``); otherwise they take their fast paths,
which the tests hold equal to these functions. A student copy of an assignment has its parts'
code taken out of this package and no fast path left for those parts.
"""
