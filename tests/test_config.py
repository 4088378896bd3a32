"""The config: presets, typed overrides, and its JSON round trip."""

import json

import pytest

from ambig_jax import config as config_lib
from ambig_jax.config import Config, Rule


def test_overrides_are_typed_from_the_fields():
    config = Config().override(["steps=300", "hidden=512,256", "refine=false", "pool=target",
                                "rule.decided=0.99", "learning_rate=3e-4", "rule.interval=0.8",
                                "hidden=64"])  # the later assignment wins
    assert config.steps == 300 and config.hidden == (64,) and config.refine is False
    assert config.rule == Rule(decided=0.99, interval=0.8)
    assert config.learning_rate == pytest.approx(3e-4)
    assert Config().override(["hidden="]).hidden == ()
    assert Config().override([]) == Config()


@pytest.mark.parametrize("assignment,message", [
    ("steps", "field=value"), ("=3", "field=value"),
    ("stepz=3", "no field 'stepz'.*steps"), ("rule.decide=1", "no field 'decide'"),
    ("steps=many", "not a valid int"), ("refine=maybe", "true or false"),
    ("strategy=magic", "strategy must be one of"), ("rule.interval=2", "rule.interval"),
    ("rule=1", "one field of rule"), ("composites=some", "composites must be one of"),
    ("steps.x=1", "no sub-fields"), ("budget=6", "budget")])
def test_bad_overrides_name_the_assignment_and_the_problem(assignment, message):
    with pytest.raises(ValueError, match=message):
        Config().override([assignment])


def test_presets_and_the_smoke_config():
    assert config_lib.get() == Config()
    smoke = config_lib.get("smoke", ["seed=3"])
    assert smoke.seed == 3 and smoke.steps < Config().steps
    assert config_lib.get("long") == Config(steps=1500)  # the default but for the steps
    with pytest.raises(ValueError, match="presets: default, long, smoke"):
        config_lib.get("huge")


def test_json_round_trip_keeps_the_rule():
    config = Config().override(["hidden=32,16", "rule.exact_prior=0", "schedule=cosine"])
    text = json.dumps(config.to_json())
    assert json.loads(text)["rule"]["exact_prior"] == 0.0
    assert Config.from_json(json.loads(text)) == config
    # a config written before a field existed takes today's default for it
    old = config.to_json()
    del old["rule"], old["refine_drop"]
    assert Config.from_json(old) == config.replace(rule=Rule(), refine_drop=0.1)
    with pytest.raises(ValueError, match="unknown fields.*'colour'"):
        Config.from_json({**config.to_json(), "colour": "red"})
    with pytest.raises(ValueError, match="config.steps: expected int"):
        Config.from_json({**config.to_json(), "steps": "300"})
