"""One column table: every published column's card description, card ``dataset_info`` type and Parquet
type come from ``publish.schema.COLUMNS`` and agree, for every config of both quickstart datasets."""

from __future__ import annotations

import pytest

from visionprefer.publish.schema import (
    ALL_CONFIG_NAMES,
    COLUMNS,
    CONDITIONS,
    CONFIG_NAMES,
    FEEDBACK,
    RECORD,
    columns,
    features,
)
from visionprefer.publish.stage import config_dir

from .conftest import REPO

QUICKSTARTS = ["quickstart.yaml", "quickstart_metrics.yaml"]  # judge feedback, metric feedback


@pytest.fixture(scope="module", params=QUICKSTARTS)
def quickstart(request, tmp_path_factory):
    """A published quickstart: (config, dataset folder). Built once per module and quickstart."""
    from visionprefer.build import build, open_run
    from visionprefer.config import load_config

    cfg = load_config(REPO / "examples" / request.param, run_dir=str(tmp_path_factory.mktemp("qs") / "run"))
    build(cfg, progress=False)
    return cfg, open_run(cfg).root / "dataset"


def _card_columns(body: str, name: str) -> dict[str, list[str]]:
    """The card's column table of config ``name``: column -> [type, description, only with]."""
    section = body.split(f"### `{name}`\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    out = {}
    for line in rows:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        out[cells[0].strip("`")] = cells[1:]
    return out


def test_the_column_table_is_well_formed():
    keys = [(c.config, c.name) for c in COLUMNS]
    assert len(keys) == len(set(keys))
    assert {c.config for c in COLUMNS} == set(ALL_CONFIG_NAMES)
    for c in COLUMNS:
        assert c.source in (RECORD, FEEDBACK, "derived"), c
        assert c.only_with is None or c.only_with in CONDITIONS, c
        assert c.description and not c.description.endswith("."), c
        assert "|" not in c.description  # a Markdown table cell


def test_card_dataset_info_and_parquet_agree_with_the_column_table(quickstart):
    import pyarrow.parquet as pq
    from datasets import Features
    from huggingface_hub import DatasetCard

    cfg, folder = quickstart
    text = (folder / "README.md").read_text(encoding="utf-8")
    card = DatasetCard(text)
    assert card.content == text  # the card as written is huggingface_hub's own serialisation of it
    infos = {i["config_name"]: i for i in card.data.dataset_info}
    assert [c["config_name"] for c in card.data.configs] == list(infos) == list(CONFIG_NAMES)
    for name in CONFIG_NAMES:
        table = columns(name)
        # the card's column list
        listed = _card_columns(card.text, name)
        assert list(listed) == [c.name for c in table], name
        # the card's dataset_info
        yaml_features = infos[name]["features"]
        assert [f["name"] for f in yaml_features] == [c.name for c in table], name
        assert Features._from_yaml_list(yaml_features) == features(name)
        # the Parquet files: column order, Arrow types, and the `datasets` features in their metadata
        shards = sorted(folder.glob(f"{config_dir(name)}/*.parquet"))  # every split
        assert shards, name
        for shard in shards:
            schema = pq.read_schema(shard)
            assert schema.names == [c.name for c in table], shard
            assert Features.from_arrow_schema(schema) == features(name)
        data = pq.read_table(shards)
        for col, entry in zip(table, yaml_features, strict=True):
            where = (name, col.name)
            one = Features({col.name: col.feature()})
            assert listed[col.name][:2] == [col.type_label(), col.description], where
            condition = CONDITIONS[col.only_with].label if col.only_with else ""
            if col.only_with and not col.filled(cfg):
                condition += " (null here)"
            assert listed[col.name][2] == condition, where
            assert entry == one._to_yaml_list()[0], where
            assert schema.field(col.name).type == one.arrow_schema.field(col.name).type, where
            # The condition holds in the data: null in every row without it, present in some row with it.
            values = data.column(col.name)
            if not col.filled(cfg):
                assert values.null_count == len(values), where
            elif col.only_with:
                assert values.null_count < len(values), where


def test_load_dataset_reads_every_config(quickstart):
    from datasets import load_dataset

    _, folder = quickstart
    for name in CONFIG_NAMES:
        ds = (
            load_dataset(str(folder / "dpo"), split="train")
            if name == "dpo"
            else load_dataset(str(folder), name, split="train")
        )
        assert len(ds) > 0 and ds.features == features(name), name


def test_the_card_template_refuses_missing_values():
    import jinja2

    from visionprefer.publish.stage import card_template

    with pytest.raises(jinja2.UndefinedError):
        card_template().render(card_data="license: other")


def test_the_format_page_lists_the_same_columns():
    """docs/dataset-format.md describes the columns at more length; it names the same ones, in order."""
    import re

    doc = (REPO / "docs" / "dataset-format.md").read_text(encoding="utf-8")
    for name in ALL_CONFIG_NAMES:
        section = doc.split(f"## Config `{name}`", 1)[1].split("\n## ", 1)[0]
        cells = re.findall(r"^\| (`[^|]+`) \|", section, re.M)
        listed = [n for cell in cells for n in re.findall(r"`([^`]+)`", cell)]
        assert listed == [c.name for c in columns(name)], name
