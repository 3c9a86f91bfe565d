-- Global steps, readers' pins, and what retention decided (docs/schema.md).

-- The global training step a checkpoint's state is of; NULL when the save gave none.
-- A checkpoint saved with a step is named checkpoint_step_<step>.pth (file_names.hpp).
ALTER TABLE checkpoints ADD COLUMN step INTEGER CHECK (step IS NULL OR step >= 0);

-- A reader's lease on a checkpoint: while an unexpired pin holds a row, rotation does
-- not delete it; the first rotation after the pin ends (released: the row is deleted;
-- or expired) does. Times are UTC ISO-8601 with milliseconds, like created_at, written
-- by the reader's clock; a writer whose clock is behind keeps the pin longer, never
-- shorter than the reader asked.
CREATE TABLE pins (
  id            INTEGER PRIMARY KEY,
  checkpoint_id INTEGER NOT NULL REFERENCES checkpoints (id),
  holder        TEXT NOT NULL,  -- who holds it, in words: "ckpt watch, pid 4242 on host7"
  pinned_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  expires_at    TEXT NOT NULL
);
CREATE INDEX pins_by_checkpoint ON pins (checkpoint_id, expires_at);

-- Why each live checkpoint is kept, as the writer's last retention pass decided: one row
-- per policy that keeps it ("newest 5", "top 3 by val_loss (min)", "every 10 epochs",
-- "one per 3600 s", "best", "resume point", "newest", "pinned by ..."). Replaced whole by
-- each pass, in the transaction that rotates; what a pass deleted, and why, is in the
-- 'rotated_out' event's detail.
CREATE TABLE retention (
  checkpoint_id INTEGER NOT NULL REFERENCES checkpoints (id),
  policy        TEXT NOT NULL,
  PRIMARY KEY (checkpoint_id, policy)
) WITHOUT ROWID;

-- Where each `ckpt watch` consumer is: the commit_seq of the last checkpoint its command
-- finished for (exit status 0), so a restarted watch resumes after it.
CREATE TABLE watch_cursors (
  name            TEXT PRIMARY KEY,
  last_commit_seq INTEGER NOT NULL,
  updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;
