"""Grading exercise submissions: ``vlm-course grade`` (see docs/grading.md).

The learner's code runs only in sandboxed worker processes (``sandbox``, ``worker``) that the
trusted pytest process drives through JSON messages (``protocol``, ``remote``); ``runner`` grades
one submission, ``report`` writes results.json, gradebook.csv and the terminal summary, and
``commands`` is the command line.
"""

GRADER_VERSION = "1.0"
