-- Issue 18 (gateway cost per value): the writer marks rollups dirty with one statement per flush,
-- one row per run of neighbouring batches (see historian/writer.py _mark_dirty). No schema change
-- was needed for it; the number is kept so that the migrations stay contiguous.
COMMENT ON TABLE rollup_dirty IS
    'Spans (tag ids, lo, hi) whose rollups need recomputing; the historian writer adds one row per run of '
    'neighbouring batches in a flush, refresh_rollups() consumes them';
