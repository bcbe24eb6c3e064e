"""A few seconds of the YAML loader's fuzz (the long one is tests/fuzz/test_yaml_fuzz.py): the same
property on a fixed sample of generated inputs (derandomized, so a unit run is repeatable)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz import yaml_inputs

QUICK = settings(database=None, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@settings(QUICK, max_examples=300)
@given(yaml_inputs.inputs)
def test_generated_inputs_keep_the_property(data: bytes) -> None:
    yaml_inputs.check(data)


@settings(QUICK, max_examples=8)
@given(yaml_inputs.blow_ups())
def test_blow_ups_keep_the_property(data: bytes) -> None:
    yaml_inputs.check(data, compare_parsers=False)
