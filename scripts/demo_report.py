"""What the demo produced: the weekly S3 objects and the two tables (run by scripts/demo.sh)."""

import gzip
import os
import sys
from collections.abc import Iterable, Sequence

import boto3
from sqlalchemy import create_engine, text

WEEKS = sys.argv[1:]


def table_lines(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The rows under their column headers, each column as wide as its widest value (NULL for None)."""
    cells = [list(headers), *([("NULL" if value is None else str(value)) for value in row] for row in rows)]
    widths = [max(len(line[column]) for line in cells) for column in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return (
            "  "
            + " | ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()
        )

    return [line(cells[0]), "  " + "-+-".join("-" * width for width in widths), *map(line, cells[1:])]


def main() -> None:
    bucket, prefix = os.environ["S3_BUCKET"], os.environ.get("S3_PREFIX", "amplitude/events")
    s3 = boto3.client(
        "s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL"), region_name=os.environ.get("AWS_REGION")
    )
    print("\n== S3 objects")
    sample = b""
    for week in WEEKS:
        key = f"{prefix}/{week}.jsonl.gz"
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        lines = gzip.decompress(body).splitlines()
        sample = sample or lines[0]
        print(f"s3://{bucket}/{key}: {len(lines):,} events, {len(body):,} bytes gzip")
    print(f"sample event: {sample[:400].decode()}…")

    schema = os.environ.get("DWH_SCHEMA", "public")
    engine = create_engine(os.environ["DWH_URL"])
    with engine.connect() as conn:
        for table, columns in (
            (
                "permanent_user_properties",
                "ehr_id, gender, birth_date, registration_date, initial_utm_source, event_time",
            ),
            (
                "changeble_user_properties",
                "ehr_id, amplitude_id, age, city, app_version, is_premium, event_time",
            ),
        ):
            count = conn.execute(text(f'SELECT count(*) FROM "{schema}".{table}')).scalar_one()
            print(f"\n== {table}: {count:,} rows")
            sample_rows = conn.execute(
                text(f'SELECT {columns} FROM "{schema}".{table} ORDER BY ehr_id LIMIT 5')
            )
            print("\n".join(table_lines(list(sample_rows.keys()), sample_rows)))
        migrated = conn.execute(
            text(
                f'SELECT migrated, count(*) FROM "{schema}".tmp_user_properties GROUP BY migrated ORDER BY 1'
            )
        ).all()
        print("\n== tmp_user_properties: " + ", ".join(f"migrated={flag}: {n:,}" for flag, n in migrated))
    engine.dispose()


if __name__ == "__main__":
    main()
