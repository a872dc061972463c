-- The original stack's table, kept column for column so that the original
-- result query `SELECT vote, COUNT(id) AS count FROM votes GROUP BY vote` keeps
-- working. IF NOT EXISTS: a database the original worker created is taken over.
CREATE TABLE IF NOT EXISTS votes (
    id   varchar(255) NOT NULL UNIQUE,
    vote varchar(255) NOT NULL
);

-- Order key of the voter's latest applied vote (from the `seq` of the queue
-- message; NULL for messages of the original vote app, which carry none).
ALTER TABLE votes ADD COLUMN IF NOT EXISTS seq bigint;
-- When the row last changed.
ALTER TABLE votes ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();

-- One row per option: the count the result page shows, kept consistent with
-- `votes` by the worker in the same transaction, so reading it costs the same
-- at ten votes as at a million.
CREATE TABLE IF NOT EXISTS tallies (
    vote  varchar(255) PRIMARY KEY,
    count bigint NOT NULL DEFAULT 0 CHECK (count >= 0)
);

-- Taking over an existing table: start the tallies from what is there.
INSERT INTO tallies (vote, count)
SELECT vote, count(*) FROM votes GROUP BY vote
ON CONFLICT (vote) DO NOTHING;
