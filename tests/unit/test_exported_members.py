"""Each module with an ``__all__`` exports exactly its public names: every listed name exists,
and every public class or function the module defines is listed (httpx's check, per module)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import exchange


def _modules() -> list[ModuleType]:
    out = []
    for info in pkgutil.walk_packages(exchange.__path__, "exchange."):
        module = importlib.import_module(info.name)
        if hasattr(module, "__all__"):
            out.append(module)
    return out


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_all_lists_what_the_module_defines(module: ModuleType) -> None:
    exported = set(module.__all__)
    assert all(hasattr(module, name) for name in exported), "a name in __all__ is missing"
    if module.__name__.endswith("__init__") or hasattr(module, "__path__"):
        return  # a package face re-exports from its modules
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    }
    assert defined <= exported, f"defined but not exported: {sorted(defined - exported)}"
