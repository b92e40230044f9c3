"""Code hashes follow the local code a transformation calls, and nothing else."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

from tessera.pipeline.codehash import code_hash


def _load(root: Path, files: dict[str, str]):
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    sys.path.insert(0, str(root))
    try:
        for name in files:
            sys.modules.pop(name.removesuffix(".py"), None)
        importlib.invalidate_caches()
        return importlib.import_module("mod_main")
    finally:
        sys.path.remove(str(root))


FILES = {
    "mod_helpers.py": """
        import math

        def used(x):
            return nested(x) + 1

        def nested(x):
            return x * 2

        def unused():
            return 0
        """,
    "mod_main.py": """
        import mod_helpers
        from mod_helpers import used

        def via_name(df):
            return used(df)

        def via_module(df):
            return mod_helpers.used(df)

        def via_lambda(df):
            return (lambda v: [used(i) for i in v])(df)
        """,
}


def test_helpers_and_their_helpers_are_hashed(tmp_path: Path) -> None:
    main = _load(tmp_path, FILES)
    before = {
        f: code_hash(getattr(main, f), None, tmp_path).digest
        for f in ("via_name", "via_module", "via_lambda")
    }
    files = code_hash(main.via_name, None, tmp_path).files
    assert sorted(Path(f).name for f in files) == ["mod_helpers.py", "mod_main.py"]

    edited = dict(FILES)
    edited["mod_helpers.py"] = FILES["mod_helpers.py"].replace("x * 2", "x * 3")
    main = _load(tmp_path, edited)
    after = {f: code_hash(getattr(main, f), None, tmp_path).digest for f in before}
    assert all(before[f] != after[f] for f in before)  # nested() is reached through used()


def test_unrelated_edits_and_library_code_do_not_count(tmp_path: Path) -> None:
    main = _load(tmp_path, FILES)
    before = code_hash(main.via_name, None, tmp_path).digest
    edited = dict(FILES)
    edited["mod_helpers.py"] = FILES["mod_helpers.py"].replace("return 0", "return 1")
    main = _load(tmp_path, edited)
    assert code_hash(main.via_name, None, tmp_path).digest == before


CONSTANTS = {
    "mod_helpers.py": """
        import re

        FILL = 1.0
        NAMES = ("a", "b")
        PATTERN = re.compile("x+")

        def fill(x):
            return x if x else FILL
        """,
    "mod_main.py": """
        from mod_helpers import fill, NAMES
        import mod_helpers

        ROUND = 4

        def uses_constants(df):
            return round(fill(df), ROUND), NAMES, mod_helpers.PATTERN
        """,
}


def test_constants_are_hashed_by_value(tmp_path: Path) -> None:
    main = _load(tmp_path, CONSTANTS)
    before = code_hash(main.uses_constants, None, tmp_path).digest
    assert code_hash(main.uses_constants, None, tmp_path).digest == before  # deterministic
    for old, new, file in [
        ("ROUND = 4", "ROUND = 1", "mod_main.py"),
        ("FILL = 1.0", "FILL = 0.5", "mod_helpers.py"),
        ('NAMES = ("a", "b")', 'NAMES = ("a", "c")', "mod_helpers.py"),
        ('re.compile("x+")', 're.compile("y+")', "mod_helpers.py"),
    ]:
        edited = dict(CONSTANTS)
        edited[file] = CONSTANTS[file].replace(old, new)
        main = _load(tmp_path, edited)
        assert code_hash(main.uses_constants, None, tmp_path).digest != before, old
    main = _load(tmp_path, CONSTANTS)  # and back
    assert code_hash(main.uses_constants, None, tmp_path).digest == before


def test_value_repr_is_stable_or_absent() -> None:
    import numpy as np

    from tessera.pipeline.codehash import value_repr

    assert value_repr({"b": 1, "a": (1.5, None)}) == value_repr({"a": (1.5, None), "b": 1})
    assert value_repr({3, 1, 2}) == value_repr({2, 3, 1})
    assert value_repr(np.arange(3)) != value_repr(np.arange(4))
    assert value_repr(object()) is None  # no memory addresses in keys
    assert value_repr([1, object()]) is None
