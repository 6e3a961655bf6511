-- What the supervisor dashboard's statistics read, served by indexes that
-- bound each read to the seconds it asks for.
--
-- The dashboard folds the calls of the day into 10-second buckets
-- (callcenter/dashboard/buckets.py) and, once started, reads only the last
-- few seconds of rows on each update, by three timestamps: connected_at and
-- ended_at (indexed per queue since 0002) and the two below. Without them
-- "calls that entered the queue since T" and "learning answers since T"
-- would each read the whole table, which grows for ever.
CREATE INDEX calls_queue_enqueued ON calls (queue, enqueued_at);
CREATE INDEX answers_answered_at ON answers (answered_at);
