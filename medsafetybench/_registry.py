"""Registers the task as `medsafetybench/medsafetybench`: Inspect names a task after the
installed package whose module defines it, and this package's name is the distribution's."""

from __future__ import annotations

import functools
from collections.abc import Callable

from inspect_ai import Task, task

from medsafe_utils.inspect_task import task as definition


def _defined_here(function: Callable[..., Task]) -> Callable[..., Task]:
    """`function` (signature and docstring kept) as a function of this module."""

    @functools.wraps(function)
    def here(*args, **kwargs) -> Task:
        return function(*args, **kwargs)

    here.__module__ = __name__
    return here


medsafetybench = task(_defined_here(definition.medsafetybench))
