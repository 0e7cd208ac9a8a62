"""The notebooks' kit: declared parameters, run-time set-up, progress bars, tables, checks.

It is apart from the mathematics (``convtools`` never imports it). A notebook uses it in its
``setup`` cell::

    from pydantic import Field
    import nbkit

    class Params(nbkit.NotebookParameters):
        height: int = Field(12, ge=4, le=256, description="image height",
                            json_schema_extra=nbkit.SMALL)

    params = Params.check(globals())
    rt = nbkit.configure(params)
"""

from nbkit.checks import check, check_close, rel_err, rounding_cutoff, show, verdict
from nbkit.parameters import SMALL, NotebookParameters, parameter_error
from nbkit.progress import progress
from nbkit.runtime import (
    Runtime,
    configure,
    disable_tf32,
    resolve_device,
    resolve_dtype,
    seed_everything,
    set_threads,
    tolerance,
)
from nbkit.tables import format_table

__all__ = [
    "SMALL",
    "NotebookParameters",
    "Runtime",
    "check",
    "check_close",
    "configure",
    "disable_tf32",
    "format_table",
    "parameter_error",
    "progress",
    "rel_err",
    "resolve_device",
    "resolve_dtype",
    "rounding_cutoff",
    "seed_everything",
    "set_threads",
    "show",
    "tolerance",
    "verdict",
]
