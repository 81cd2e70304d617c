"""Package faces: each name listed once, in ``__init__.pyi``, resolving to its definition.

Every package whose names load on first use lists them in a stub that type checkers
read and ``processpype._lazy.attach_stub`` reads at run time. Each name must resolve,
be the very object of the module the stub names, and appear in ``__all__``, ``dir()``
and a star import; the stubs must ship with the package.
"""

from __future__ import annotations

import ast
import configparser
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import processpype

PACKAGE = Path(processpype.__file__).parent
ROOT = PACKAGE.parent
STUBS = sorted(PACKAGE.rglob("__init__.pyi"))


def _face(stub: Path) -> str:
    return ".".join(stub.parent.relative_to(ROOT).parts)


def _stub_names(stub: Path) -> dict[str, str | None]:
    """Each name of ``stub`` and the module it comes from (None: the face's own)."""
    names: dict[str, str | None] = {}
    for node in ast.parse(stub.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                assert alias.name not in names, f"{alias.name} listed twice in {stub}"
                names[alias.name] = node.module
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
    return names


FACES = [pytest.param(stub, id=_face(stub)) for stub in STUBS]


def test_every_lazy_face_has_a_stub() -> None:
    faces = {_face(stub) for stub in STUBS}
    assert {
        "processpype",
        "processpype.communications",
        "processpype.communications.outbox",
        "processpype.config",
        "processpype.testing",
    } <= faces
    for init in PACKAGE.rglob("__init__.py"):
        if "attach_stub" in init.read_text(encoding="utf-8"):
            assert init.with_suffix(".pyi").is_file(), init


def _defining_module(module: str, name: str) -> str:
    """Follow a stub that names another face down to the module that defines ``name``."""
    stub = PACKAGE.parent.joinpath(*module.split("."), "__init__.pyi")
    if stub.is_file():
        inner = _stub_names(stub).get(name)
        assert inner is not None, f"{module} does not export {name}"
        return _defining_module(inner, name)
    return module


@pytest.mark.parametrize("stub", FACES)
def test_every_name_of_a_face_is_the_object_of_its_defining_module(stub: Path) -> None:
    face = importlib.import_module(_face(stub))
    for name, module in _stub_names(stub).items():
        value = getattr(face, name)
        if module is None:
            continue  # the face's own (``__version__``)
        defining = importlib.import_module(_defining_module(module, name))
        assert value is vars(defining)[name], name


@pytest.mark.parametrize("stub", FACES)
def test_all_and_dir_list_every_name_of_the_stub(stub: Path) -> None:
    face = importlib.import_module(_face(stub))
    names = sorted(_stub_names(stub))
    assert face.__all__ == names
    assert set(names) <= set(dir(face))
    assert "__all__" in dir(face)


@pytest.mark.parametrize("stub", FACES)
def test_a_star_import_binds_every_name(stub: Path) -> None:
    code = (
        f"from {_face(stub)} import *\n"
        f"import {_face(stub)} as face\n"
        "missing = [n for n in face.__all__ if n not in globals()]\n"
        "print(','.join(missing))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_root_lists_the_shared_names_through_the_communications_face() -> None:
    root = _stub_names(PACKAGE / "__init__.pyi")
    communications = _stub_names(PACKAGE / "communications" / "__init__.pyi")
    for name in set(root) & set(communications):
        assert root[name] == "processpype.communications", name


def test_the_stubs_ship_in_the_wheel_and_the_sdist() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    package_data = setup["options.package_data"]
    assert "*.pyi" in package_data.get("*", ""), "setup.cfg package_data ships the stubs"
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    assert "recursive-include processpype *.pyi" in manifest


def test_a_missing_stub_is_an_import_error_that_says_what_to_do(tmp_path: Path) -> None:
    from processpype._lazy import attach_stub

    getattr_, _ = attach_stub("gone", str(tmp_path / "__init__.py"), {})
    with pytest.raises(ImportError, match=r"__init__\.pyi is missing: .*reinstall processpype"):
        getattr_("Anything")
