-- An agent who has left routing never becomes available again by itself.
--
-- Two ways to leave while a call goes on: the agent is removed (a call in
-- progress goes on and ends as usual), or the agent signs out on a call (the
-- page's ``offline``; the caller is on the line, so the agent stays on it).
-- Every statement that frees an agent after a call (the end with no wrap-up,
-- the wrap-up stored, the wrap-up's clock, a callback nobody answered) set it
-- 'available' by its state alone, so such an agent was back in routing:
-- offered calls on a panel already closed, each caller kept for the offer's
-- timeout. One rule here, on the row, covers all of them and any later one.
--
-- ``offline`` on a call marks the agent (``offline_after_call``, in the one
-- statement of ``set_offline``); opening a panel again (``agent_by_token``
-- with its seen flag) or the agent's own ``available`` takes the mark back.
-- ``set_available`` also refuses a removed agent, so its panel is told no.
--
-- The WHEN clause is evaluated without calling the function: the other
-- updates of an agent pay nothing for it. The trigger's name sorts before
-- agents_count_state's (a table's BEFORE triggers fire in name order), so the
-- state version counts the row as it is written.
ALTER TABLE agents ADD COLUMN offline_after_call boolean NOT NULL DEFAULT false;

CREATE FUNCTION agents_stay_offline() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.state := 'offline';
    NEW.idle_since := NULL;
    NEW.offline_after_call := false;
    RETURN NEW;
END
$$;

CREATE TRIGGER agents_bar_from_routing
    BEFORE UPDATE OF state ON agents
    FOR EACH ROW
    WHEN (NEW.state = 'available' AND (NEW.removed_at IS NOT NULL OR NEW.offline_after_call))
    EXECUTE FUNCTION agents_stay_offline();
