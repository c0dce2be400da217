from pathlib import Path

from data_schema.schemas import SCHEMAS, schemas_json

GOLDEN = Path(__file__).with_name("schemas.golden.json")


def test_schemas_match_golden_file():
    # A schema change must be deliberate: bump the version and regenerate the golden file
    # with `python -c "from data_schema.schemas import schemas_json; print(schemas_json(), end='')"`.
    assert schemas_json() == GOLDEN.read_text()


def test_every_dataset_chunks_whole_samples_or_fixed_rows():
    for schema in SCHEMAS.values():
        names = [d.name for d in schema.datasets]
        assert len(names) == len(set(names)), schema.name
        for d in schema.datasets:
            assert d.chunk_rows >= 1
            if not d.ragged:
                assert d.chunk_rows == 1, f"{schema.name}.{d.name}: one sample per chunk"
            assert d.compression in ("gzip", None)
