-- Statistics on the tables every call writes, refreshed every 500,000 changes
-- instead of every few seconds.
--
-- An ANALYZE throws away every cached plan that reads the table, in every
-- connection, so the next run of each of our prepared statements is planned
-- afresh, across the whole pool at once. With the defaults, autovacuum
-- analysed agents, waiting_calls, call_offers, calls and interactions every
-- few seconds under load (their rows change several times a call), and the
-- routing benchmark's p99 was a 40-100 ms spike every 5 seconds (the embedded
-- server's autovacuum naptime) and nothing else. At 50,000 changes the spikes
-- came about once every 20 s, each still lining up with an ANALYZE in the log.
-- What these tables hold changes all the time but its shape does not, and the
-- planner scales its row counts by the table's current size between samples,
-- so a fresh sample every few minutes at full load is plenty. Customers and
-- their phones grow by one provisional customer per unknown caller and keep a
-- tighter refresh. Vacuum, which keeps the claim fast, is untouched.
ALTER TABLE agents SET (autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 500000);
ALTER TABLE agent_presence SET (autovacuum_analyze_scale_factor = 0,
                                autovacuum_analyze_threshold = 500000);
ALTER TABLE waiting_calls SET (autovacuum_analyze_threshold = 500000);
ALTER TABLE call_offers SET (autovacuum_analyze_threshold = 500000);
ALTER TABLE calls SET (autovacuum_analyze_threshold = 500000);
ALTER TABLE interactions SET (autovacuum_analyze_threshold = 500000);
ALTER TABLE call_bridges SET (autovacuum_analyze_threshold = 500000);
ALTER TABLE call_releases SET (autovacuum_analyze_threshold = 500000);
ALTER TABLE customers SET (autovacuum_analyze_threshold = 50000);
ALTER TABLE customer_phones SET (autovacuum_analyze_threshold = 50000);
