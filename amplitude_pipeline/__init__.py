"""Amplitude → S3 → PostgreSQL user-properties pipeline.

Importing the package imports no Dagster: the plain layers (``amplitude``, ``storage``,
``transform``, ``load``, ``mapping``) are usable from a script, the bench or another
orchestrator. The code location is ``amplitude_pipeline.definitions``; ``defs`` is also an
attribute of the package, loaded on first access, so that every
``dagster … -m amplitude_pipeline`` command (CONTRACT §3) finds it.
"""

import sys
import types
from typing import Any

__all__ = ["defs"]


class _Package(types.ModuleType):
    """The package's module, whose ``defs`` is always the code location.

    The Dagster layer is the subpackage ``amplitude_pipeline.defs``: importing it makes Python
    bind the package's ``defs`` attribute to that subpackage, which would hide the code location
    from Dagster's module loader (it looks the attribute up again when it reloads the code). The
    setter drops that binding; the subpackage stays importable by its name (``sys.modules``).
    """

    @property
    def defs(self) -> Any:
        from amplitude_pipeline.definitions import defs

        return defs

    @defs.setter
    def defs(self, _subpackage: object) -> None:
        pass

    def __dir__(self) -> list[str]:
        # Dagster's loader finds the code location among the module's attributes (``dir``).
        return sorted({*super().__dir__(), "defs"})


sys.modules[__name__].__class__ = _Package
