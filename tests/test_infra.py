import sqlalchemy as sa


def test_postgres_server_is_real(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select version()")).scalar_one().startswith("PostgreSQL")
    engine.dispose()


def test_broker_answers_metadata(broker) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    assert isinstance(admin.list_topics(), list)
    admin.close()
