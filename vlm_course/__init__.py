"""vlm_course: the helper package of the Vision-Language Models course.

Lessons import what they need from the submodules, e.g.::

    from vlm_course.profiles import resolve
    from vlm_course.images import load_image
    from vlm_course import shapesworld as sw
"""

__version__ = "0.1.0"
