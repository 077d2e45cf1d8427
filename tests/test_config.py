from __future__ import annotations

import pytest

from visionprefer.config import load_config
from visionprefer.errors import ConfigError

from .conftest import write_config

VALID = """
run_dir: out
prompts:
  sources:
    - path: p.txt
generate:
  generators:
    - preset: tiny-sd15
  guidance_scales: [3, 7.5]
"""


def test_valid_config_resolves_and_types(tmp_path):
    cfg = load_config(write_config(tmp_path, VALID))
    assert cfg.generate.guidance_scales == (3.0, 7.5)
    assert all(isinstance(g, float) for g in cfg.generate.guidance_scales)
    assert cfg.resolve_path("p.txt") == tmp_path / "p.txt"
    snap = cfg.to_dict()
    assert snap["prompts"]["sources"][0]["path"] == str((tmp_path / "p.txt").resolve())
    assert "base_dir" not in snap
    assert len(cfg.fingerprint()) == 16


def test_out_overrides_run_dir(tmp_path):
    assert load_config(write_config(tmp_path, VALID), run_dir="elsewhere").run_dir == "elsewhere"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            VALID.replace("guidance_scales:", "guidance_scale:"),
            "generate.guidance_scale: unknown key; valid keys here: generators, guidance_scales",
        ),
        (VALID.replace("[3, 7.5]", "high"), "generate.guidance_scales: expected a list, got str"),
        (
            VALID.replace("[3, 7.5]", "[3, loud]"),
            "generate.guidance_scales[1]: expected a number, got 'loud'",
        ),
        (
            VALID.replace("tiny-sd15", "sd9"),
            "unknown preset 'sd9'; choose one of sd15, sd21, dreamlike, sdxl",
        ),
        (VALID + "  cfg_mode: random\n", "generate.cfg_mode: 'random' is not one of grid, sample"),
        (VALID + "  batch_size: 0\n", "generate.batch_size: must be a positive integer, got 0"),
        (VALID + "  batch_size: true\n", "generate.batch_size: expected an integer, got True"),
        (VALID.replace("run_dir: out\n", ""), "run_dir: required key is missing"),
        (VALID + "api_key: sk-123\n", "api_key: secrets do not belong in a config file"),
        ("[1, 2]\n", "expected a mapping of settings at the top level, got list"),
        ("", "config file is empty"),
        ("run_dir: [unclosed\n", "YAML syntax error at line"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, body, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, body))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_duplicate_generator_names_rejected(tmp_path):
    body = VALID.replace("    - preset: tiny-sd15\n", "    - preset: tiny-sd15\n    - preset: tiny-sd15\n")
    with pytest.raises(ConfigError, match=r"duplicate generator name\(s\) \['tiny-sd15'\]"):
        load_config(write_config(tmp_path, body))


def test_config_error_is_also_value_error():
    assert issubclass(ConfigError, ValueError)


def test_a_partly_given_section_keeps_its_own_defaults():
    """The judge's `llm` defaults differ from the generic LLM defaults (a GPT-4o snapshot, room for four
    explanations per image); giving only some of its keys must not fall back to the generic ones."""
    from visionprefer.config import LLMConfig, config_from_dict

    base = {
        "run_dir": "r",
        "prompts": {"sources": [{"path": "p.txt"}]},
        "generate": {"generators": [{"preset": "sd15"}]},
    }
    default_judge = config_from_dict(base).annotate.judge.llm
    assert (default_judge.model, default_judge.max_tokens) != (LLMConfig().model, LLMConfig().max_tokens)
    partial = config_from_dict(
        {**base, "annotate": {"backend": "judge", "judge": {"llm": {"base_url": "http://127.0.0.1:1/v1"}}}}
    ).annotate.judge.llm
    assert (partial.model, partial.max_tokens) == (default_judge.model, default_judge.max_tokens)
    assert partial.base_url == "http://127.0.0.1:1/v1"
    given = config_from_dict(
        {**base, "annotate": {"judge": {"llm": {"model": "local-vlm", "max_tokens": 900}}}}
    ).annotate.judge.llm
    assert (given.model, given.max_tokens) == ("local-vlm", 900)
