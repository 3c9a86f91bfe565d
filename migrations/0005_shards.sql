-- The shards of a multi-rank checkpoint (issue 16; docs/schema.md, "Shards"). The
-- checkpoint's own row names its manifest (best_model.pth, checkpoint_epoch_N.pth, ...:
-- a small .pth listing the shards); one row here per rank's shard, inserted with the
-- checkpoint's pending row and committed with it, so a checkpoint is seen with all of
-- its shards or not at all. Shard files are named
-- <manifest stem>.shard-<rank>-of-<world size>.<save token>.pth (file_names.hpp).
CREATE TABLE shards (
  checkpoint_id INTEGER NOT NULL REFERENCES checkpoints (id),
  rank          INTEGER NOT NULL CHECK (rank >= 0),
  world_size    INTEGER NOT NULL CHECK (world_size > rank),
  file          TEXT NOT NULL,
  size          INTEGER NOT NULL CHECK (size >= 0),
  hash          TEXT NOT NULL,
  hash_algo     TEXT NOT NULL,
  -- The shard file's bytes in blocks of block_size (the last one shorter): their
  -- xxh3-64 hashes, 16 hex digits each, concatenated. A resharding load reads byte ranges
  -- of a shard and checks every block it reads against these.
  block_size    INTEGER NOT NULL CHECK (block_size > 0),
  block_hashes  TEXT NOT NULL,
  -- Where each sharded tensor of this shard sits in its global tensor, as JSON:
  -- [{"path": ["model", "fc.weight"], "global_shape": [..], "offsets": [..], "sizes": [..]}, ...]
  placement     TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (checkpoint_id, rank)
) WITHOUT ROWID;
CREATE INDEX shards_by_file ON shards (file);
