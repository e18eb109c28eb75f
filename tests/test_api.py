"""The read API against real databases (PostgreSQL and SQLite), through HTTP via TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from engine.broker import EmbeddedBroker, free_port
from engine.config import Settings
from engine.db.migrate import upgrade
from engine.db.models import ALLELE_COLUMNS
from engine.db.session import get_engine
from engine.errors import DatabaseNotCurrentError
from tests.api_data import Ids, populate


def make_settings(url: str, bootstrap: str | None = None) -> Settings:
    return Settings(DB_URL=url, KAFKA_BOOTSTRAP_SERVERS=bootstrap or "")


@pytest.fixture
def seeded(db_url: str) -> tuple[str, Ids]:
    upgrade(db_url)
    return db_url, populate(db_url)


@pytest.fixture
def client(seeded: tuple[str, Ids]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(seeded[0]))) as test_client:
        yield test_client


@pytest.fixture
def ids(seeded: tuple[str, Ids]) -> Ids:
    return seeded[1]


def ok_json(client: TestClient, path: str, **params: object) -> dict:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --- analyses ---------------------------------------------------------------------------------


def test_analyses_list_is_newest_first_with_total(client: TestClient, ids: Ids) -> None:
    body = ok_json(client, "/api/v1/analyses")
    assert body["total"] == 3
    assert (body["page"], body["per_page"]) == (1, 100)
    assert [item["id"] for item in body["items"]] == [ids.trio, ids.single, ids.other]
    trio = body["items"][0]
    assert trio["name"] == "Trio-1"
    assert trio["genepanel"] == {"name": "HBOC", "version": "v01"}
    assert trio["priority"] == 2
    assert trio["date_requested"].startswith("2024-03-01T12:00:00")


def test_analyses_pagination_and_name_filter(client: TestClient, ids: Ids) -> None:
    second_page = ok_json(client, "/api/v1/analyses", page=2, per_page=2)
    assert second_page["total"] == 3
    assert [item["id"] for item in second_page["items"]] == [ids.other]
    past_the_end = ok_json(client, "/api/v1/analyses", page=3, per_page=2)
    assert (past_the_end["items"], past_the_end["total"]) == ([], 3)
    assert ok_json(client, "/api/v1/analyses", name="nothing-like-this", page=2)["total"] == 0

    by_name = ok_json(client, "/api/v1/analyses", name="trio")
    assert (by_name["total"], [item["name"] for item in by_name["items"]]) == (1, ["Trio-1"])
    # LIKE wildcards in the filter are literal characters.
    assert [item["name"] for item in ok_json(client, "/api/v1/analyses", name="_50%")["items"]] == [
        "other_50%"
    ]
    assert ok_json(client, "/api/v1/analyses", name="%")["total"] == 1
    assert ok_json(client, "/api/v1/analyses", name="nothing-like-this")["total"] == 0


def test_analysis_detail_has_samples_with_family(client: TestClient, ids: Ids) -> None:
    body = ok_json(client, f"/api/v1/analyses/{ids.trio}")
    assert body["name"] == "Trio-1"
    assert body["warnings"] == "low coverage in BRCA2"
    assert body["report"] == "trio report"
    assert body["genepanel"] == {"name": "HBOC", "version": "v01"}
    samples = {sample["identifier"]: sample for sample in body["samples"]}
    assert set(samples) == {"P1", "F1", "M1"}
    proband = samples["P1"]
    assert (proband["proband"], proband["affected"], proband["sex"]) == (True, True, "Female")
    assert (proband["father"], proband["mother"], proband["sibling"]) == ("F1", "M1", None)
    assert proband["sample_type"] == "HTS"
    father = samples["F1"]
    assert (father["proband"], father["affected"], father["sex"]) == (False, False, "Male")
    assert samples["F1"]["father"] is None


# --- alleles of an analysis -------------------------------------------------------------------


def test_analysis_alleles_with_genotypes_and_current_annotation(client: TestClient, ids: Ids) -> None:
    body = ok_json(client, f"/api/v1/analyses/{ids.trio}/alleles")
    assert body["total"] == 3
    alleles = {item["id"]: item for item in body["items"]}
    # Reached through allele_id and secondallele_id; the other analysis's allele is not here.
    assert list(alleles) == [ids.snv, ids.first_of_pair, ids.second_of_pair]

    snv = alleles[ids.snv]
    assert {key: snv[key] for key in ALLELE_COLUMNS} == {
        "chromosome": "17",
        "start_position": 41_000_099,
        "open_end_position": 41_000_100,
        "change_from": "A",
        "change_to": "G",
        "change_type": "SNP",
        "vcf_pos": 41_000_100,
        "vcf_ref": "A",
        "vcf_alt": "G",
        "length": 1,
        "caller_type": "snv",
        "genome_reference": "GRCh37",
    }
    assert set(snv["genotypes"]) == {"P1", "F1", "M1"}
    assert snv["genotypes"]["P1"] == {
        "sample_id": ids.proband,
        "sample_type": "HTS",
        "type": "Heterozygous",
        "multiallelic": False,
        "genotype_quality": 99,
        "sequencing_depth": 40,
        "allele_depth": {"REF (A)": 20, "A": 20},
        "allele_ratio": 0.5,
        "genotype_likelihood": [500, 0, 600],
        "copy_number": None,
        "filter_status": "PASS",
        "variant_quality": 500.0,
    }
    assert (snv["genotypes"]["F1"]["type"], snv["genotypes"]["F1"]["sample_id"]) == ("Reference", ids.father)
    assert snv["annotation"]["id"] == ids.current_annotation
    assert snv["annotation"]["annotations"] == {"frequencies": {"gnomad": 0.2}, "version": 2}

    first, second = alleles[ids.first_of_pair], alleles[ids.second_of_pair]
    assert {name: gt["type"] for name, gt in first["genotypes"].items()} == {
        "P1": "Heterozygous",
        "F1": "Heterozygous",
        "M1": "Reference",
    }
    assert {name: gt["type"] for name, gt in second["genotypes"].items()} == {
        "P1": "Heterozygous",
        "F1": "Reference",
        "M1": "Homozygous",
    }
    assert first["genotypes"]["P1"]["copy_number"] == 2
    assert second["genotypes"]["P1"]["allele_ratio"] == 0.3
    assert second["genotypes"]["P1"]["filter_status"] == "LowQual"
    assert second["genotypes"]["P1"]["variant_quality"] == 42.5
    assert first["annotation"]["annotations"] == {"transcripts": []}
    assert second["annotation"] is None


def test_analysis_alleles_in_other_analysis_use_its_samples(client: TestClient, ids: Ids) -> None:
    body = ok_json(client, f"/api/v1/analyses/{ids.single}/alleles")
    assert body["total"] == 2
    by_id = {item["id"]: item for item in body["items"]}
    assert set(by_id) == {ids.snv, ids.single_only}
    lone = by_id[ids.snv]["genotypes"]["S2"]
    assert isinstance(lone.pop("sample_id"), int) and lone["sample_type"] == "HTS"
    assert by_id[ids.snv]["genotypes"] == {
        "S2": {
            "sample_type": "HTS",
            "type": "Homozygous",
            "multiallelic": False,
            "genotype_quality": None,
            "sequencing_depth": 12,
            "allele_depth": None,
            "allele_ratio": None,
            "genotype_likelihood": None,
            "copy_number": None,
            "filter_status": "PASS",
            "variant_quality": 90.0,
        }
    }
    assert ok_json(client, f"/api/v1/analyses/{ids.other}/alleles") == {
        "items": [],
        "total": 0,
        "page": 1,
        "per_page": 100,
        "next_cursor": None,
    }


def test_analysis_alleles_pagination(client: TestClient, ids: Ids) -> None:
    first_page = ok_json(client, f"/api/v1/analyses/{ids.trio}/alleles", per_page=2)
    second_page = ok_json(client, f"/api/v1/analyses/{ids.trio}/alleles", per_page=2, page=2)
    assert first_page["total"] == second_page["total"] == 3
    assert [item["id"] for item in first_page["items"]] == [ids.snv, ids.first_of_pair]
    assert [item["id"] for item in second_page["items"]] == [ids.second_of_pair]
    assert second_page["items"][0]["genotypes"]["M1"]["type"] == "Homozygous"
    assert first_page["next_cursor"] == ids.first_of_pair and second_page["next_cursor"] is None


def test_analysis_alleles_keyset_cursor_matches_page_numbers(client: TestClient, ids: Ids) -> None:
    path = f"/api/v1/analyses/{ids.trio}/alleles"
    pages = [ok_json(client, path, per_page=1, page=page)["items"] for page in (1, 2, 3)]
    by_number = [item["id"] for items in pages for item in items]
    by_cursor: list[int] = []
    cursor = None
    while True:
        params = {"per_page": 1} if cursor is None else {"per_page": 1, "cursor": cursor}
        body = ok_json(client, f"/api/v1/analyses/{ids.trio}/alleles", **params)
        by_cursor += [item["id"] for item in body["items"]]
        assert body["total"] == 3
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert by_cursor == by_number == [ids.snv, ids.first_of_pair, ids.second_of_pair]
    after_last = ok_json(client, f"/api/v1/analyses/{ids.trio}/alleles", cursor=ids.second_of_pair)
    assert after_last["items"] == [] and after_last["total"] == 3


def test_analysis_alleles_query_count_does_not_grow_with_page_size(
    client: TestClient, seeded: tuple[str, Ids]
) -> None:
    url, ids = seeded
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append(statement)

    engine = get_engine(url)
    ok_json(client, f"/api/v1/analyses/{ids.trio}/alleles", per_page=1)  # builds the allele list once
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        ok_json(client, f"/api/v1/analyses/{ids.trio}/alleles", per_page=1)
        one = len(statements)
        statements.clear()
        ok_json(client, f"/api/v1/analyses/{ids.trio}/alleles", per_page=3)
        three = len(statements)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert one == three
    assert three <= 6


# --- single allele ------------------------------------------------------------------------------


def test_allele_detail_has_current_annotation_and_history(client: TestClient, ids: Ids) -> None:
    body = ok_json(client, f"/api/v1/alleles/{ids.snv}")
    assert (body["id"], body["vcf_pos"], body["vcf_alt"]) == (ids.snv, 41_000_100, "G")
    assert body["annotation"]["id"] == ids.current_annotation
    assert body["annotation"]["annotations"]["version"] == 2
    history = body["annotation_history"]
    assert [entry["id"] for entry in history] == [ids.old_annotation, ids.current_annotation]
    assert history[0]["date_superceeded"].startswith("2024-03-06")
    assert history[1]["date_superceeded"] is None
    assert [entry["bundle_version"] for entry in history] == [None, "2024.1"]
    assert body["annotation"]["bundle_version"] == "2024.1"

    unannotated = ok_json(client, f"/api/v1/alleles/{ids.second_of_pair}")
    assert (unannotated["annotation"], unannotated["annotation_history"]) == (None, [])


# --- import jobs --------------------------------------------------------------------------------


def test_import_jobs_list_and_filters(client: TestClient, ids: Ids) -> None:
    body = ok_json(client, "/api/v1/import/jobs")
    assert body["total"] == 3
    assert [job["id"] for job in body["items"]] == [ids.job_submitted, ids.job_failed, ids.job_done]
    failed = ok_json(client, "/api/v1/import/jobs", status="FAILED")
    assert failed["total"] == 1
    job = failed["items"][0]
    assert (job["analysis_name"], job["stage"], job["message"], job["attempts"]) == (
        "Single-2",
        "annotate",
        "Single-2.vcf:12: bad GT",
        3,
    )
    assert "history" not in job
    trio_jobs = ok_json(client, "/api/v1/import/jobs", analysis="Trio-1")
    assert [job["id"] for job in trio_jobs["items"]] == [ids.job_submitted, ids.job_done]
    assert ok_json(client, "/api/v1/import/jobs", analysis="Trio-1", status="DONE")["total"] == 1
    paged = ok_json(client, "/api/v1/import/jobs", per_page=1, page=3)
    assert (paged["total"], [job["id"] for job in paged["items"]]) == (3, [ids.job_done])
    past_the_end = ok_json(client, "/api/v1/import/jobs", per_page=2, page=5, status="FAILED")
    assert (past_the_end["total"], past_the_end["items"]) == (1, [])


def test_import_job_detail_has_history(client: TestClient, ids: Ids) -> None:
    body = ok_json(client, f"/api/v1/import/jobs/{ids.job_done}")
    assert body["status"] == "DONE"
    assert body["stage"] == "persist"
    assert body["attempts"] == 1
    assert body["analysis_id"] == ids.trio
    assert body["fingerprint"] == "abc"
    assert [entry["status"] for entry in body["history"]] == ["SUBMITTED", "DONE"]


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/analyses/987654",
        "/api/v1/analyses/987654/alleles",
        "/api/v1/alleles/987654",
        "/api/v1/import/jobs/987654",
    ],
)
def test_unknown_ids_are_404_with_message(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "987654 not found" in response.json()["message"]


def test_unknown_path_is_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/v1/analyses", {"per_page": 0}, "per_page"),
        ("/api/v1/analyses", {"per_page": 1001}, "per_page"),
        ("/api/v1/analyses", {"page": 0}, "page"),
        ("/api/v1/analyses", {"page": "first"}, "page"),
        ("/api/v1/analyses/abc", {}, "analysis_id"),
        ("/api/v1/alleles/1.5", {}, "allele_id"),
        ("/api/v1/import/jobs", {"status": "BOGUS"}, "status"),
        ("/api/v1/import/jobs", {"per_page": -3}, "per_page"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(
    client: TestClient, path: str, params: dict, parameter: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    message = response.json()["message"]
    assert f"'{parameter}'" in message
    assert set(response.json()) == {"message"}


def test_bad_status_lists_the_valid_ones(client: TestClient) -> None:
    message = client.get("/api/v1/import/jobs", params={"status": "done"}).json()["message"]
    assert "query parameter 'status'" in message
    assert "'FAILED'" in message and "'done'" in message


# --- startup, health, readiness, metrics --------------------------------------------------------


def test_refuses_to_start_on_unmigrated_database(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url))
    with pytest.raises(DatabaseNotCurrentError, match="annostream db upgrade"), TestClient(app):
        pass


def test_healthz(client: TestClient) -> None:
    assert ok_json(client, "/healthz") == {"status": "ok"}


def test_readyz_ok_with_database_and_broker(seeded: tuple[str, Ids], broker: EmbeddedBroker) -> None:
    settings = make_settings(seeded[0], broker.bootstrap_servers)
    with TestClient(create_app(settings)) as client:
        assert ok_json(client, "/readyz") == {
            "status": "ready",
            "checks": {"database": "ok", "broker": "ok"},
            "message": None,
        }


def test_readyz_503_names_the_broker_when_it_is_down(seeded: tuple[str, Ids]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with TestClient(create_app(make_settings(seeded[0], dead))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"] == {"database": "ok", "broker": "unreachable"}
    assert body["message"].startswith("not ready: broker unreachable")
    assert dead in body["message"]


def test_readyz_503_names_the_database_when_it_is_gone(pg_url: str, broker: EmbeddedBroker) -> None:
    upgrade(pg_url)
    with TestClient(create_app(make_settings(pg_url, broker.bootstrap_servers))) as client:
        assert client.get("/readyz").status_code == 200
        database = sa.engine.make_url(pg_url).database
        admin = sa.create_engine(
            sa.engine.make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{database}" WITH (FORCE)'))
        admin.dispose()
        response = client.get("/readyz")
        assert client.get("/healthz").status_code == 200
    assert response.status_code == 503
    body = response.json()
    assert body["checks"] == {"database": "unreachable", "broker": "ok"}
    assert "database unreachable" in body["message"]
    assert database in body["message"]


def test_readyz_503_when_database_url_points_nowhere(broker: EmbeddedBroker) -> None:
    nowhere = f"postgresql+psycopg2://annostream@127.0.0.1:{free_port()}/nothing"
    # No lifespan here (not used as a context manager): startup would rightly refuse this URL.
    client = TestClient(create_app(make_settings(nowhere, broker.bootstrap_servers)))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unreachable"
    assert "OperationalError" in response.json()["message"]


def test_metrics_expose_counters_by_route_template(client: TestClient, ids: Ids) -> None:
    for _ in range(2):
        ok_json(client, f"/api/v1/analyses/{ids.trio}")
    client.get("/api/v1/analyses/987654")
    client.get("/no/such/987654")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "annostream_variants_imported_total",
        "annostream_analyses_imported_total",
        "annostream_watcher_folders_seen_total",
        "annostream_api_request_duration_seconds_bucket",
    ):
        assert name in text
    ok_line = (
        'annostream_api_requests_total{method="GET",route="/api/v1/analyses/{analysis_id}",status="200"}'
    )
    missing_line = ok_line.replace('status="200"', 'status="404"')
    assert float(_sample(text, ok_line)) >= 2
    assert float(_sample(text, missing_line)) >= 1
    assert f'route="/api/v1/analyses/{ids.trio}"' not in text  # ids never become label values
    assert 'route="/no/such/987654"' not in text
    assert (
        float(
            _sample(
                text,
                ok_line.replace("/api/v1/analyses/{analysis_id}", "<unmatched>").replace('"200"', '"404"'),
            )
        )
        >= 1
    )


def _sample(text: str, prefix: str) -> str:
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return line.split()[-1]
    raise AssertionError(f"{prefix} not in metrics output")
