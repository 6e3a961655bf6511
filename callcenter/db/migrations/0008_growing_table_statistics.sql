-- Tables that grow get fresh statistics as they grow; 0007's fixed thresholds
-- stay only on the tables whose size does not.
--
-- 0007 analysed calls, interactions and the other per-call tables every
-- 500,000 changes, and customers and their phones every 50,000. On a new
-- database that means never for a long while: the 10-minute routing
-- benchmark at 200 calls/s ended with customers, customer_phones, calls and
-- interactions never analysed, and the planner, with no column statistics,
-- guessed that "not merged" kept 0.5 % of the customers and joined the
-- caller's phone to a sequential scan of every customer. Identifying a
-- caller took 0.27 ms at 2,000 customers and 0.62 ms at 10,000, and grew
-- with every new caller.
--
-- A threshold proportional to the table (autovacuum's scale factor) gives a
-- refresh every time the table has grown by a fixed fraction: often while it
-- is young and its shape is still changing, rarely once it is large. The
-- per-call tables change several times a call (insert, connect, question,
-- end), so their factor is 1: a sample each time the changes since the last
-- one reach the table's size, about every 25 % of growth, a few minutes apart
-- at 100,000 calls and 200 calls/s. Customers change about once each, so
-- theirs is 0.2. agents, agent_presence and waiting_calls keep 0007's fixed
-- thresholds: their sizes follow the staff and the queue, not the history.
ALTER TABLE calls SET (autovacuum_analyze_scale_factor = 1, autovacuum_analyze_threshold = 1000);
ALTER TABLE interactions SET (autovacuum_analyze_scale_factor = 1,
                              autovacuum_analyze_threshold = 1000);
ALTER TABLE call_offers SET (autovacuum_analyze_scale_factor = 1,
                             autovacuum_analyze_threshold = 1000);
ALTER TABLE call_bridges SET (autovacuum_analyze_scale_factor = 1,
                              autovacuum_analyze_threshold = 1000);
ALTER TABLE call_releases SET (autovacuum_analyze_scale_factor = 1,
                               autovacuum_analyze_threshold = 1000);
ALTER TABLE customers SET (autovacuum_analyze_scale_factor = 0.2,
                           autovacuum_analyze_threshold = 1000);
ALTER TABLE customer_phones SET (autovacuum_analyze_scale_factor = 0.2,
                                 autovacuum_analyze_threshold = 1000);
