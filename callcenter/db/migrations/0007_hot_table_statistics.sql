-- Statistics on the hot tables, refreshed by the minute instead of by the second.
--
-- An ANALYZE throws away every cached plan that reads the table, in every
-- connection, so the next run of each of our prepared statements is planned
-- afresh. With the defaults, autovacuum analysed agents, waiting_calls,
-- call_offers, calls and interactions every few seconds under load (their rows
-- change several times a call), and each time the whole pool replanned the
-- routing statements at once: the routing benchmark's p99 was a 40-100 ms spike
-- every 5 seconds (the embedded server's autovacuum naptime) and nothing else.
-- What these tables hold changes all the time but its shape does not, so a
-- fresh sample every 50,000 changes (about a minute at 200 calls/s) is plenty.
-- Vacuum, which keeps the claim fast, is untouched.
ALTER TABLE agents SET (autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 50000);
ALTER TABLE agent_presence SET (autovacuum_analyze_scale_factor = 0,
                                autovacuum_analyze_threshold = 50000);
ALTER TABLE waiting_calls SET (autovacuum_analyze_threshold = 50000);
ALTER TABLE call_offers SET (autovacuum_analyze_threshold = 50000);
ALTER TABLE calls SET (autovacuum_analyze_threshold = 50000);
ALTER TABLE interactions SET (autovacuum_analyze_threshold = 50000);
ALTER TABLE customers SET (autovacuum_analyze_threshold = 50000);
ALTER TABLE customer_phones SET (autovacuum_analyze_threshold = 50000);
