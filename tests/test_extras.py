"""A backend or command whose extra is missing fails before any work, in one line naming the extra."""
from __future__ import annotations

import pytest

from ravl import registry
from ravl.errors import MissingDependencyError, MissingExtraError
from ravl.extras import install_hint, missing_modules, require
from ravl.specs import declare


@declare(requires=("numpy", "ravl_no_such_module_xyz"), install=install_hint("demo"))
def _needs_a_missing_module(spec):
    if spec.name == "missing-file":
        raise FileNotFoundError("no model file")  # the factory's own checks come first
    import ravl_no_such_module_xyz  # noqa: F401

    raise AssertionError("unreachable")


@pytest.fixture
def needs_extra():
    registry.register("encoders", "needs_extra", _needs_a_missing_module)
    yield "needs_extra"
    registry._REGISTERED["encoders"].pop("needs_extra", None)  # other tests list every family


def test_registry_names_the_extra_a_factory_lacks(needs_extra):
    with pytest.raises(MissingExtraError) as caught:
        registry.create("encoders", "needs_extra")
    message = str(caught.value)
    assert message == "encoder backend 'needs_extra' needs ravl_no_such_module_xyz: pip install 'ravl[demo]'"
    assert isinstance(caught.value, MissingDependencyError) and "\n" not in message
    assert isinstance(caught.value.__cause__ or caught.value.__context__, ImportError)
    with pytest.raises(FileNotFoundError, match="no model file"):
        registry.create("encoders", "needs_extra:missing-file")
    row = next(r for r in registry.describe("encoders") if r["family"] == "needs_extra")
    assert not row["usable"] and row["why_not"] == "needs ravl_no_such_module_xyz: pip install 'ravl[demo]'"


def test_require_and_missing_modules():
    assert missing_modules(["numpy", "ravl_no_such_module_xyz", "os.path"]) == ["ravl_no_such_module_xyz"]
    require("nothing", ("numpy",), install_hint("x"))  # present: no error
    with pytest.raises(MissingExtraError, match=r"^ravl tune needs ravl_no_such_module_xyz: pip install 'ravl\[tune\]'$"):
        require("ravl tune", ("ravl_no_such_module_xyz",), install_hint("tune"))


def test_default_encoder_needs_no_extra():
    row = next(r for r in registry.describe("encoders") if r["family"] == "default")
    assert row["usable"] and not {"torch", "transformers", "timm"} & set(registry.declaration(
        registry.factory_for("encoders", registry.parse_spec("default"))).requires)
