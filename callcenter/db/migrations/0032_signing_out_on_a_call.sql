-- An agent who signs out on a call leaves routing once that call is over.
--
-- Signing out ends the shift: the agent's page sends ``offline`` before it
-- closes. On a call the agent cannot go offline (the caller is on the line),
-- and the message did nothing, so when the call ended the agent went on to
-- its wrap-up and, by the wrap-up's clock, to 'available': calls were offered
-- to its closed panel until the grace period ran out, each caller held for
-- the offer's timeout. Now ``offline`` on a call marks the agent
-- (``offline_after_call``); the rule of migration 0031, that a removed agent
-- never becomes available, covers the marked agent too. The agent's own
-- ``available`` clears the mark, and so does opening a panel again
-- (``agent_by_token`` with its seen flag): a sign-out taken back.
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

-- Named, like the trigger it replaces, to fire before agents_count_state.
DROP TRIGGER agents_bar_removed_from_routing ON agents;
DROP FUNCTION agents_removed_stay_offline();
CREATE TRIGGER agents_bar_from_routing
    BEFORE UPDATE OF state ON agents
    FOR EACH ROW
    WHEN (NEW.state = 'available' AND (NEW.removed_at IS NOT NULL OR NEW.offline_after_call))
    EXECUTE FUNCTION agents_stay_offline();
