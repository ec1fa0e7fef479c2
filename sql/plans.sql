-- whatsapp_channel: how the hot paths are planned. The functions the workers call for every
-- batch or turn run with planner settings of their own (in pg_proc.proconfig, as SET clauses
-- would put them), given here in one place with the reasons, by _wa_plan_hot_paths(): CREATE
-- EXTENSION runs it once every function exists, and every upgrade script ends by running it.

-- The functions of this extension with these names: members of it (pg_depend), never a
-- function of the same name that someone else created in a shared schema.
CREATE FUNCTION _wa_own_functions(names text[]) RETURNS SETOF regprocedure
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT p.oid::regprocedure
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid
     WHERE d.classid = 'pg_catalog.pg_proc'::regclass
       AND d.refclassid = 'pg_catalog.pg_extension'::regclass
       AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'whatsapp_channel')
       AND d.deptype = 'e'
       AND p.proname = ANY (names);
END;

CREATE FUNCTION _wa_plan_hot_paths() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    plan record;
    f regprocedure;
BEGIN
    FOR plan IN VALUES
        -- Batch writes. Each statement joins a batch (tens to thousands of rows) to tables of
        -- millions: only nested loops over their unique indexes keep its cost independent of
        -- the tables' size, for a batch of any size. (No JIT: nothing here runs long.) Generic
        -- plans: those nested loops suit every batch size, and a custom plan per call (which
        -- PL/pgSQL keeps choosing when a batch's size makes the generic estimate look worse)
        -- was a third of the delivery worker's time in _wa_apply_statuses, measured with perf.
        (ARRAY['_wa_receive_messages', '_wa_receive_statuses', '_wa_apply_statuses', '_wa_receive_echoes',
               '_wa_receive_history'],
         'SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off SET plan_cache_mode = force_generic_plan'),
        -- A batch join of the delivery worker: a turn's accepted sends to their messages, the
        -- same nested loops, and generic plans for the same reason: planned again at every
        -- turn, its UPDATE and its locking read cost 280 and 315 µs of planning against 230
        -- and 66 of execution (pg_stat_statements, 200 sends a second, one a turn).
        -- (_wa_queued_behind: the same turn's sends, to their customers' queues.)
        (ARRAY['_wa_mark_sent_all', '_wa_queued_behind'],
         'SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off SET plan_cache_mode = force_generic_plan'),
        -- Queue reads. The statistics of a queue are always out of date (a burst fills it
        -- faster than it is analyzed), and on them a bitmap scan of a whole channel plus a sort
        -- can look cheapest. Only index scans: a queue is then read in due order and the
        -- reading stops at the LIMIT. (No JIT: the cost penalty of the disabled scans would
        -- make every turn compile, 190 ms, measured.) Generic plans: the claim's UPDATE by
        -- primary key was planned again at every turn, 460 µs of planning against 165 of
        -- execution (measured as above).
        (ARRAY['_wa_claim_due', '_wa_next_due_in'],
         'SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off SET plan_cache_mode = force_generic_plan')
    LOOP
        IF (SELECT count(*) FROM @extschema@._wa_own_functions(plan.column1)) <> pg_catalog.cardinality(plan.column1) THEN
            RAISE EXCEPTION 'a function of % does not exist (a rename not made in sql/plans.sql?)', plan.column1;
        END IF;
        FOR f IN SELECT * FROM @extschema@._wa_own_functions(plan.column1)
        LOOP
            EXECUTE pg_catalog.format('ALTER FUNCTION %s %s', f, plan.column2);
        END LOOP;
    END LOOP;
END
$$;

SELECT _wa_plan_hot_paths();
