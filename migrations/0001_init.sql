-- The index of a checkpoint directory. See docs/schema.md for the lifecycle of a row
-- and example queries.

-- Settings that tools must apply the same way the library does (max_to_keep).
CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE checkpoints (
  id         INTEGER PRIMARY KEY,
  kind       TEXT NOT NULL CHECK (kind IN ('best', 'epoch', 'interrupt')),
  epoch      INTEGER CHECK (epoch IS NULL OR epoch >= 0),
  metric     REAL,
  file       TEXT NOT NULL,
  size       INTEGER NOT NULL CHECK (size >= 0),
  hash       TEXT NOT NULL,
  hash_algo  TEXT NOT NULL,
  status     TEXT NOT NULL CHECK (status IN (
               'pending',      -- temp file written and synced, rename not yet known to be done
               'committed',    -- the file under `file` is this checkpoint
               'consumed',     -- an interrupt checkpoint a run resumed from; deleted by the next save
               'replaced',     -- a later save of the same name replaced the file
               'aborted',      -- a pending save whose rename never happened
               'deleting',     -- obsolete (rotated out, consumed); the file is being deleted
               'deleted',      -- obsolete and its file is gone
               'quarantined',  -- failed verification; the file was moved into quarantine/
               'missing'       -- the file disappeared from under the index
             )),
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  CHECK ((kind = 'epoch') = (epoch IS NOT NULL))
);

-- At most one row describes the file currently under a name.
CREATE UNIQUE INDEX checkpoints_live_file ON checkpoints (file)
  WHERE status IN ('committed', 'consumed');
-- Resume priority, best lookup and rotation: each an index range scan.
CREATE INDEX checkpoints_by_status_kind_epoch ON checkpoints (status, kind, epoch);

-- Append-only history: what happened and why.
CREATE TABLE events (
  id            INTEGER PRIMARY KEY,
  at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  event         TEXT NOT NULL,
  checkpoint_id INTEGER REFERENCES checkpoints (id),
  detail        TEXT
);
CREATE INDEX events_by_checkpoint ON events (checkpoint_id);

CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
