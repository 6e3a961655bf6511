-- A removed agent never becomes available again.
--
-- Removing an agent takes it offline and returns its offer, but a call in
-- progress goes on and ends as usual. Every statement that frees an agent
-- after a call (the end with no wrap-up, the wrap-up stored, the wrap-up's
-- clock, a callback nobody answered) set it 'available' by its state alone,
-- so the removed agent was back in routing: offered calls on a socket already
-- closed, each caller kept for the offer's timeout. One rule here, on the
-- row, covers all of them and any later one; the agent's own 'available'
-- (set_available) also checks, so its panel is told no.
--
-- The WHEN clause is evaluated without calling the function: the other
-- updates of an agent pay nothing for it. The trigger's name sorts before
-- agents_count_state's (a table's BEFORE triggers fire in name order), so the
-- state version counts the row as it is written.
CREATE FUNCTION agents_removed_stay_offline() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.state := 'offline';
    NEW.idle_since := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER agents_bar_removed_from_routing
    BEFORE UPDATE OF state ON agents
    FOR EACH ROW
    WHEN (NEW.removed_at IS NOT NULL AND NEW.state = 'available')
    EXECUTE FUNCTION agents_removed_stay_offline();
