"""Assignments from one source: student copies with solution regions taken out, and grading.

Solution regions live in the readable reference, ``minivision/reference/`` (and in tutorials),
marked with comment lines in the spirit of nbgrader's and otter's markers, each naming the part
it belongs to::

    def sigmoid_backward(grad, y):
        # BEGIN SOLUTION sigmoid: write the sigmoid backward from the saved output y
        return grad * y * (1 - y)
        # END SOLUTION sigmoid

- The part after ``SOLUTION`` is one of :data:`PARTS` (a part may own several regions);
  the text after the colon is the task, shown to the student in the error message.
- A region is a whole function body or a block of whole statements; the BEGIN line's
  indentation is the block's. In a student copy a chosen region becomes
  ``raise NotImplementedError("sigmoid: write ... (see tutorial 09_...)")`` at that
  indentation; the regions of parts not chosen keep their solution. No marker line stays.
- Every other implementation of a chosen part (its fast paths: Numba and CUDA kernels,
  Winograd, ...) is left out of the copy, so the copy runs the student's code on every
  device (``markers.py``: ``FAST PATH`` regions and files).
- A region runs only when its function is called, never at import time, so a student copy
  imports whatever is left out (Numba compiles a kernel lazily, on its first call).

``make_student_copy`` writes a student copy; ``grade`` runs the instructor's tests of each
part against a copy, in a subprocess, and scores it. The command layer uses this package;
nothing in the library does.
"""

from minivision.assignment.grade import PartScore, grade, score_table
from minivision.assignment.make import make_student_copy
from minivision.assignment.parts import PARTS, Part, check_parts

__all__ = ["PARTS", "Part", "PartScore", "check_parts", "grade", "make_student_copy", "score_table"]
