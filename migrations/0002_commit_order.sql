-- The order of commits. "Newest" means most recently committed, not highest epoch: a run
-- restarted from an earlier state writes lower epochs after higher ones, and an interrupt
-- checkpoint is newer than the epochs saved before it and older than those saved after.
-- Resume loads the resumable checkpoint with the highest commit_seq; rotation keeps the
-- most recently committed epochs (docs/durability.md).
--
-- commit_seq is 1, 2, 3, ... in the order rows became committed (saved, rolled forward by
-- recovery, adopted); NULL for rows that never were (pending, aborted). It never changes
-- afterwards, whatever happens to the row.
ALTER TABLE checkpoints ADD COLUMN commit_seq INTEGER;

-- Rows committed before this migration: in the order their commit was recorded in the
-- events (saved, recovered, adopted); rows without such an event (none are written so)
-- first, by id.
-- (A correlated subquery, not UPDATE ... FROM, which needs SQLite 3.33.)
CREATE TEMP TABLE commit_order (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
INSERT INTO commit_order (id, seq)
  SELECT c.id,
         ROW_NUMBER() OVER (ORDER BY (SELECT COALESCE(MAX(e.id), 0) FROM events e
                                      WHERE e.checkpoint_id = c.id
                                        AND e.event IN ('saved', 'recovered', 'adopted')), c.id)
  FROM checkpoints c
  WHERE c.status NOT IN ('pending', 'aborted');
UPDATE checkpoints SET commit_seq = (SELECT seq FROM commit_order WHERE commit_order.id = checkpoints.id)
  WHERE id IN (SELECT id FROM commit_order);
DROP TABLE commit_order;

CREATE UNIQUE INDEX checkpoints_by_commit_seq ON checkpoints (commit_seq) WHERE commit_seq IS NOT NULL;
-- Resume, best lookup and rotation: an index range scan each, newest commit first.
CREATE INDEX checkpoints_by_status_kind_commit ON checkpoints (status, kind, commit_seq);
