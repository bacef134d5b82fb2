from hygie.cdm import cdm_schema
from hygie.cdm.schema import renames_53_to_54


def test_cdm54_has_every_table_with_keys():
    s = cdm_schema("5.4")
    assert len(s.tables) == 39
    assert sum(len(t.columns) for t in s) == 432
    assert s["person"].primary_key.name == "person_id"
    assert s["drug_exposure"].column("drug_concept_id").foreign_key.table == "concept"
    assert s["person"].column("person_id").sql_type == "BIGINT"
    assert s["person"].column("gender_concept_id").sql_type == "INTEGER"
    groups = {t.group for t in s}
    assert groups == {
        "clinical",
        "health_system",
        "economics",
        "derived",
        "metadata",
        "vocabulary",
        "results",
    }


def test_every_foreign_key_points_to_an_existing_column():
    for version in ("5.3", "5.4"):
        s = cdm_schema(version)
        for t in s:
            for c in t.columns:
                if c.foreign_key:
                    assert c.foreign_key.column in s[c.foreign_key.table].column_names, (t.name, c.name)


def test_53_renames_land_on_54_columns():
    s53, s54 = cdm_schema("5.3"), cdm_schema("5.4")
    for table, renames in renames_53_to_54().items():
        for old, new in renames.items():
            assert old in s53[table].column_names
            if new:
                assert new in s54[table].column_names


def test_create_sql_runs_on_duckdb():
    import duckdb

    con = duckdb.connect()
    for t in cdm_schema("5.4"):
        con.execute(t.create_sql())
    assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()[0] == 39
