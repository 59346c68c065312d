"""The read half of a load, one lever at a time, on a cached week (no services needed).

``python -m bench.levers WAY FILE`` reads the gzip JSON-lines ``FILE`` (a week under
``bench/.cache``) into records with the shipped mapping, one of these ways, and prints how many
records it made. Time two ways against each other as whole processes, paired (``/usr/bin/time``
or a harness that alternates them); the README's Speed section quotes such pairs.

- ``orjson``: the loader before issue 18: every field of every line parsed by ``orjson``, the
  snapshot converted or matched against the user's last one as a dict (``UserPropertiesMemo``).
- ``four-fields``: the shipped decoder in this process (``EventLineDecoder``: simdjson checks the
  whole line, msgspec builds only ``uuid``, ``event_time``, ``amplitude_id`` and the
  ``user_properties`` text, which the memo compares as bytes).
- ``chunks``: the shipped reading in this process (``line_chunks``: the decoder, in chunks that
  say where batches end), as the loader runs it for objects under 2 MiB.
- ``worker``: the same chunks from the line worker process, handed back pickled, as the loader
  runs it for larger objects: the second core's share, less the hand-over.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WAYS = ("orjson", "four-fields", "chunks", "worker")
BATCH_SIZE = 100_000


def count_records(way: str, path: Path) -> int:
    from amplitude_pipeline.inflate import gzip_line_blocks
    from amplitude_pipeline.load.line_records import MEMO_USERS, line_chunks
    from amplitude_pipeline.load.line_worker import LineWorker
    from amplitude_pipeline.transform.mapping import load_field_mappings
    from amplitude_pipeline.transform.records import UserPropertiesMemo

    mappings = load_field_mappings(REPO / "field_mappings.yaml")
    with path.open("rb") as stream:
        if way == "orjson":
            import orjson

            from amplitude_pipeline.transform.records import transform_single_record

            memo = UserPropertiesMemo()
            return sum(
                transform_single_record(orjson.loads(line), mappings, memo) is not None
                for block in gzip_line_blocks(stream)
                for line in block
            )
        if way == "four-fields":
            from amplitude_pipeline.transform.event_decoder import EventLineDecoder

            decoder = EventLineDecoder(mappings, UserPropertiesMemo(max_users=MEMO_USERS, window=MEMO_USERS))
            return sum(
                decoder.record(line) is not None for block in gzip_line_blocks(stream) for line in block
            )
        if way == "chunks":
            return sum(len(chunk.records) for chunk in line_chunks(stream, mappings, batch_size=BATCH_SIZE))
        if way == "worker":
            with LineWorker(mappings, begin_after=-1, batch_size=BATCH_SIZE) as worker:
                return sum(len(chunk.records) for chunk in worker.chunks(stream))
    raise ValueError(f"unknown way {way!r}: one of {', '.join(WAYS)}")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in WAYS:
        print(f"usage: python -m bench.levers {{{','.join(WAYS)}}} FILE", file=sys.stderr)
        return 2
    print(count_records(argv[0], Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
