"""Grading exercise submissions: ``vlm-course grade`` (see docs/grading.md).

The learner's code runs only in sandboxed worker processes (``sandbox``, ``worker``) that the
trusted pytest process (``trusted``, ``plugin``) drives through JSON messages (``protocol``,
``remote``); ``scratch`` holds the submission's scratch tmpfs and the link-safe file operations of
the trusted side; ``runner`` grades one submission, ``report`` writes results.json, gradebook.csv
and the terminal summary, ``gradescope`` builds and runs the Gradescope autograder, and
``commands`` is the command line.
"""

GRADER_VERSION = "2.0"
