"""Messages built from pydantic errors: one problem per mistake, hints at any depth, rendering."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from tessera.config.errors import ConfigError, Problem
from tessera.config.validate import validate_model


def locate(path: Any) -> tuple[str | None, int | None]:
    return "pipeline.yaml", 7


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bounds(Strict):
    lower: float = 0.0
    upper: float = 1.0


class Periods(Strict):
    periods: int | list[int] = 1


class Nested(Strict):
    bounds: dict[str, Bounds] = {}
    ranges: list[Bounds] = []
    pair: tuple[Bounds, Bounds] | None = None
    maybe: Optional[Bounds] = None  # noqa: UP045 - the typing spelling is the point
    either: Bounds | int = 0
    aliased: int = Field(0, alias="the-alias")


class Required(Strict):
    column: str
    bounds: dict[str, Bounds] = {}


class NeedsUpper(Strict):
    upper: float


class WithNeeds(Strict):
    bounds: dict[str, NeedsUpper] = {}


def problems(model: type[BaseModel], data: Any) -> list[Problem]:
    instance, found = validate_model(model, data, locate=locate, stage="a")
    assert instance is None
    return found


# --- 1. one mistake, one problem --------------------------------------------------------------


def test_union_member_errors_merge_into_one_problem() -> None:
    [p] = problems(Periods, {"periods": "x"})
    assert p.key == "periods"
    assert p.message == "invalid value"
    assert p.expected == "a valid integer or a valid list"
    assert p.got == "'x' (str)"
    assert (p.file, p.line, p.stage) == ("pipeline.yaml", 7, "a")
    assert p.render() == (
        "pipeline.yaml:7 stage 'a' key 'periods': invalid value; "
        "expected a valid integer or a valid list, got 'x' (str)"
    )


def test_union_error_inside_a_list_names_the_item_only() -> None:
    [p] = problems(Periods, {"periods": [1, "x"]})
    assert p.key == "periods.1"
    assert p.expected is not None and p.expected.startswith("a valid integer")
    assert p.got == "'x' (str)"
    assert "list[int]" not in p.render()


def test_two_bad_items_are_two_problems() -> None:
    found = problems(Periods, {"periods": [1, "x", "y"]})
    assert [p.key for p in found] == ["periods.1", "periods.2"]


def test_union_of_model_and_scalar_reports_the_model_mistake() -> None:
    [p] = problems(Nested, {"either": {"uper": 2}})
    assert p.key == "either.uper"
    assert p.message == "unknown key"
    assert p.hint == "did you mean 'upper'?"


def test_union_of_model_and_scalar_with_a_wrong_type() -> None:
    [p] = problems(Nested, {"either": "z"})
    assert p.key == "either"
    assert p.expected == "a valid dictionary or a valid integer"
    assert p.got == "'z' (str)"


def test_single_error_keeps_pydantic_wording() -> None:
    [p] = problems(Bounds, {"lower": "low"})
    assert p.key == "lower"
    assert p.expected == "a valid number, unable to parse string as a number"


# --- 2. "did you mean" at any depth -----------------------------------------------------------


def test_unknown_key_inside_dict_of_models() -> None:
    [p] = problems(Nested, {"bounds": {"age": {"uper": 3}}})
    assert p.key == "bounds.age.uper"
    assert p.message == "unknown key"
    assert p.hint == "did you mean 'upper'?"
    assert p.got is None


def test_unknown_key_without_a_close_match_lists_known_keys() -> None:
    [p] = problems(Nested, {"bounds": {"age": {"zzz": 3}}})
    assert p.hint == "known keys: lower, upper"


def test_unknown_key_inside_list_tuple_and_optional() -> None:
    data = {
        "ranges": [{"lower": 0}, {"lowr": 1}],
        "pair": [{"upper": 1}, {"uppr": 2}],
        "maybe": {"lover": 0},
    }
    found = {p.key: p.hint for p in problems(Nested, data)}
    assert found == {
        "ranges.1.lowr": "did you mean 'lower'?",
        "pair.1.uppr": "did you mean 'upper'?",
        "maybe.lover": "did you mean 'lower'?",
    }


def test_unknown_top_level_key_suggests_the_alias() -> None:
    [p] = problems(Nested, {"the_alias": 1})
    assert p.key == "the_alias"
    assert p.hint == "did you mean 'the-alias'?"


# --- 4. missing keys --------------------------------------------------------------------------


def test_missing_key_has_expected_type_and_no_got() -> None:
    [p] = problems(Required, {})
    assert p.key == "column"
    assert p.message == "missing required key"
    assert p.expected == "str"
    assert p.got is None
    assert "got" not in p.render()


def test_missing_key_inside_dict_of_models() -> None:
    [p] = problems(WithNeeds, {"bounds": {"age": {}}})
    assert p.key == "bounds.age.upper"
    assert p.message == "missing required key"
    assert p.expected == "float"
    assert p.got is None


def test_prefix_is_prepended_to_the_key() -> None:
    _, [p] = validate_model(Periods, {"periods": "x"}, locate=locate, prefix="with")
    assert p.key == "with.periods"


# --- 3. rendering -----------------------------------------------------------------------------


def test_single_problem_renders_without_a_header() -> None:
    p = Problem("invalid value", "pipeline.yaml", 3, "a", "x", expected="a valid integer", got="1")
    assert ConfigError(p).render() == (
        "pipeline.yaml:3 stage 'a' key 'x': invalid value; expected a valid integer, got 1"
    )
    assert str(ConfigError([p])) == ConfigError(p).render()
    assert "Configuration error" not in ConfigError(p).render()


def test_several_problems_are_numbered_and_sorted_by_file_and_line() -> None:
    found = [
        Problem("the stages form a cycle"),
        Problem("c", "pipeline.yaml", 9),
        Problem("b", "params/b.yaml", 2),
        Problem("no line", "command line"),
        Problem("a", "pipeline.yaml", 3),
        Problem("d", "params/b.yaml", 1),
    ]
    assert ConfigError(found).render().splitlines() == [
        "6 configuration errors:",
        "  1. params/b.yaml:1: d",
        "  2. params/b.yaml:2: b",
        "  3. pipeline.yaml:3: a",
        "  4. pipeline.yaml:9: c",
        "  5. the stages form a cycle",
        "  6. command line: no line",
    ]


def test_bad_mapping_key_and_bad_value_are_separate_problems() -> None:
    class Counts(Strict):
        counts: dict[int, int] = {}

    found = problems(Counts, {"counts": {"a": "b"}})
    assert [(p.key, p.message, p.got) for p in found] == [
        ("counts.a", "invalid key", "'a' (str)"),
        ("counts.a", "invalid value", "'b' (str)"),
    ]
