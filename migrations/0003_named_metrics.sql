-- What a row says about the state it holds, beyond the one `metric` column:
--   metric_source  where `metric` came from, in words ("the save's argument",
--                  "val_acc in the state", "epoch 12, the same content"); NULL when unknown
--   state_epoch    the epoch the checkpoint's state is of: an epoch row's own epoch; the
--                  best model's and an interrupt checkpoint's from the state (or the save)
--   origin         how the row came to be: 'saved' by a save call (also one recovery
--                  rolled forward), 'adopted' (a complete file found without a row: copied
--                  in, or written by another program), 'external' (a complete file another
--                  writer saved under a committed name, replacing that row's bytes)
ALTER TABLE checkpoints ADD COLUMN metric_source TEXT;
ALTER TABLE checkpoints ADD COLUMN state_epoch INTEGER;
ALTER TABLE checkpoints ADD COLUMN origin TEXT NOT NULL DEFAULT 'saved'
  CHECK (origin IN ('saved', 'adopted', 'external'));

-- Rows from before this migration: what their events tell.
UPDATE checkpoints SET state_epoch = epoch WHERE kind = 'epoch';
UPDATE checkpoints SET origin = 'adopted'
  WHERE id IN (SELECT checkpoint_id FROM events WHERE event = 'adopted' AND checkpoint_id IS NOT NULL);
-- (An adopted row's metric was read from its file, which for the best model was its
-- best_acc: the previous best in the guide's loop. Its source stays unknown.)
UPDATE checkpoints SET metric_source = 'the save''s argument' WHERE metric IS NOT NULL AND origin <> 'adopted';

-- Every int or float top-level entry of a checkpoint's state (val_acc, train_loss, lr,
-- ...), in the order the state holds them. A NaN is stored as NULL (SQLite has no NaN).
CREATE TABLE metrics (
  checkpoint_id INTEGER NOT NULL REFERENCES checkpoints (id),
  position      INTEGER NOT NULL,
  name          TEXT NOT NULL,
  value         REAL,
  PRIMARY KEY (checkpoint_id, name)
) WITHOUT ROWID;
CREATE INDEX metrics_by_name ON metrics (name, checkpoint_id);
