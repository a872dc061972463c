-- The vote a row held before its last change, written by the worker in the
-- same upsert (`SET prev_vote = votes.vote, vote = EXCLUDED.vote`). It exists
-- so that the upsert's RETURNING yields both the old and the new vote of each
-- changed row, from the row version the upsert itself locked: the tally deltas
-- are then exact even when several workers race on the same new voter.
-- (Postgres 18 has `RETURNING old.*`; the stacks here run 15 and 17.)
ALTER TABLE votes ADD COLUMN IF NOT EXISTS prev_vote varchar(255);
