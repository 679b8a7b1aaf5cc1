"""RocksDB options for the worker's Faust tables: bounded memory instead of Faust's defaults.

Faust opens one RocksDB per table and partition with `faust.stores.rocksdb.RocksDBOptions`
defaults: 64 MiB write buffers, up to 3 of them, and a 2 GiB block cache, each. With about
six tables of 3-4 partitions that is far more than the worker's budget, and it showed: with
1M tracked builds the build-state memtables alone grew to ~3 x 64 MiB before the first flush
(RSS jumped by ~70 MiB near 290k builds, benchmarks/README.md). Here each partition's store
keeps at most 2 memtables of 8 MiB and an 8 MiB block cache, so the tables' RAM is bounded
by (2 x 8 + 8) MiB per open partition whatever the number of builds; the rest lives on disk,
where RocksDB is built to keep it. More, smaller flushes cost a little background CPU (on
RocksDB's threads, not the event loop).

Faust passes a table's `options` to `RocksDBOptions(**options)` (and ignores them for
`memory://`). It pops keys from the mapping it gets, so every table gets its own dict.
"""

from __future__ import annotations

from typing import Any

MIB = 2**20

WRITE_BUFFER_SIZE = 8 * MIB
MAX_WRITE_BUFFER_NUMBER = 2
BLOCK_CACHE_SIZE = 8 * MIB


def table_options() -> dict[str, Any]:
    """A fresh `options` mapping for `app.Table(...)`."""
    return {
        "write_buffer_size": WRITE_BUFFER_SIZE,
        "max_write_buffer_number": MAX_WRITE_BUFFER_NUMBER,
        "block_cache_size": BLOCK_CACHE_SIZE,
    }
