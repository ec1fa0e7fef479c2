//! Channel grants seen from another session: a grant, a revoke and a change of role membership
//! made and committed elsewhere take effect on an agent's next statement, although its session
//! keeps the answer of `_wa_visible_channels` between statements (src/channels/access.rs):
//! also inside REPEATABLE READ transactions that wrote (whose old snapshot must not be what is
//! read, nor kept), for prepared statements run again inside one transaction, after a rollback,
//! for changes applied as a replica applies them, with several roles on one connection, in
//! parallel workers, and after the function that makes the answer is replaced.

use e2e::cluster;
use postgres::{Client, GenericClient};

const SEEN: &str = "SELECT name FROM wa_channels WHERE name = ANY($1) ORDER BY name";

/// The names, among `names`, of the channels the session sees (sorted).
fn seen(session: &mut impl GenericClient, names: &[&str]) -> Vec<String> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    session.query(SEEN, &[&names]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// How many parallel workers a plan of `EXPLAIN (ANALYZE, FORMAT JSON)` launched, in all.
fn workers_launched(plan: &serde_json::Value) -> u64 {
    match plan {
        serde_json::Value::Object(node) => {
            node.get("Workers Launched").and_then(|n| n.as_u64()).unwrap_or(0)
                + node.values().map(workers_launched).sum::<u64>()
        }
        serde_json::Value::Array(nodes) => nodes.iter().map(workers_launched).sum(),
        _ => 0,
    }
}

/// The test's roles, made anew: two agents and a team role.
fn create_roles(admin: &mut Client) {
    drop_roles(admin);
    admin
        .batch_execute(
            "CREATE ROLE grants_agent; CREATE ROLE grants_agent2; CREATE ROLE grants_team;
             GRANT SELECT ON wa_channels TO grants_agent, grants_agent2;",
        )
        .unwrap();
}

fn drop_roles(admin: &mut Client) {
    admin
        .batch_execute(
            "DO $$BEGIN
               IF to_regrole('grants_agent') IS NOT NULL THEN
                 DELETE FROM wa_channel_grants WHERE grantee::text IN ('grants_agent', 'grants_agent2', 'grants_team');
                 DROP OWNED BY grants_agent, grants_agent2, grants_team;
                 DROP ROLE grants_agent, grants_agent2, grants_team;
               END IF;
             END$$",
        )
        .unwrap();
}

#[test]
fn grants_revokes_and_memberships_from_other_sessions_take_effect_on_the_next_statement() {
    let a = cluster().add_channel("seen-a");
    let b = cluster().add_channel("seen-b");
    let names = [a.name.as_str(), b.name.as_str()];
    let (only_a, only_b, both) = (vec![a.name.clone()], vec![b.name.clone()], vec![a.name.clone(), b.name.clone()]);
    let mut admin = cluster().connect();
    create_roles(&mut admin);
    admin.execute("SELECT wa_grant_channel($1, 'grants_team', 'read')", &[&b.name]).unwrap();
    let mut agent = cluster().connect();
    agent.batch_execute("SET ROLE grants_agent").unwrap();
    let none: Vec<String> = Vec::new();
    // Twice each time: the second answer is the kept one.
    for _ in 0..2 {
        assert_eq!(seen(&mut agent, &names), none, "no grant yet");
    }

    admin.execute("SELECT wa_grant_channel($1, 'grants_agent', 'read')", &[&a.name]).unwrap();
    for _ in 0..2 {
        assert_eq!(seen(&mut agent, &names), only_a, "after another session's grant");
    }

    admin.batch_execute("GRANT grants_team TO grants_agent").unwrap();
    for _ in 0..2 {
        assert_eq!(seen(&mut agent, &names), both, "as a member of a granted role");
    }
    admin.batch_execute("REVOKE grants_team FROM grants_agent").unwrap();
    for _ in 0..2 {
        assert_eq!(seen(&mut agent, &names), only_a, "no longer a member");
    }

    // A REPEATABLE READ transaction that has written (so has a transaction id): a grant and a
    // revoke committed during it count from its next statement, as a GRANT on a table does,
    // and what it read is not kept beyond it with its old snapshot.
    admin.execute("SELECT wa_grant_channel($1, 'grants_agent', 'read')", &[&b.name]).unwrap();
    agent.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current()").unwrap();
    assert_eq!(seen(&mut agent, &names), both);
    admin.execute("SELECT wa_revoke_channel($1, 'grants_agent')", &[&b.name]).unwrap();
    assert_eq!(seen(&mut agent, &names), only_a, "a revoke during a writing snapshot");
    admin.execute("SELECT wa_grant_channel($1, 'grants_agent', 'read')", &[&b.name]).unwrap();
    assert_eq!(seen(&mut agent, &names), both, "a grant during a writing snapshot");
    admin.execute("SELECT wa_revoke_channel($1, 'grants_agent')", &[&b.name]).unwrap();
    agent.batch_execute("COMMIT").unwrap();
    for _ in 0..2 {
        assert_eq!(seen(&mut agent, &names), only_a, "after that transaction");
    }

    // A prepared statement run again inside one transaction locks nothing new.
    {
        let mut tx = agent.transaction().unwrap();
        let statement = tx.prepare(SEEN).unwrap();
        let run = |tx: &mut postgres::Transaction| -> Vec<String> {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            tx.query(&statement, &[&names]).unwrap().iter().map(|r| r.get(0)).collect()
        };
        assert_eq!(run(&mut tx), only_a);
        admin.execute("SELECT wa_grant_channel($1, 'grants_agent', 'read')", &[&b.name]).unwrap();
        assert_eq!(run(&mut tx), both, "a prepared statement after a grant");
        admin.execute("SELECT wa_revoke_channel($1, 'grants_agent')", &[&b.name]).unwrap();
        assert_eq!(run(&mut tx), only_a, "a prepared statement after a revoke");
        tx.commit().unwrap();
    }

    // A grant the agent's own transaction made and rolled back.
    let mut tx = agent.transaction().unwrap();
    tx.batch_execute("RESET ROLE").unwrap();
    tx.execute("SELECT wa_grant_channel($1, 'grants_agent', 'read')", &[&b.name]).unwrap();
    tx.batch_execute("SET LOCAL ROLE grants_agent").unwrap();
    assert_eq!(seen(&mut tx, &names), both, "its own grant, before the rollback");
    tx.rollback().unwrap();
    agent.batch_execute("SET ROLE grants_agent").unwrap();
    assert_eq!(seen(&mut agent, &names), only_a, "after the rollback");

    // A revoke applied as a logical replication subscriber applies it.
    admin
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             DELETE FROM wa_channel_grants WHERE grantee = 'grants_agent'::regrole AND channel_id = {};
             RESET session_replication_role;",
            a.id
        ))
        .unwrap();
    for _ in 0..2 {
        assert_eq!(seen(&mut agent, &names), none, "after a revoke applied as a replica");
    }

    // Two roles on one connection, each with its own kept answer.
    admin.execute("SELECT wa_grant_channel($1, 'grants_agent', 'read')", &[&a.name]).unwrap();
    admin.execute("SELECT wa_grant_channel($1, 'grants_agent2', 'read')", &[&b.name]).unwrap();
    for _ in 0..2 {
        agent.batch_execute("SET ROLE grants_agent").unwrap();
        assert_eq!(seen(&mut agent, &names), only_a, "the first role");
        agent.batch_execute("SET ROLE grants_agent2").unwrap();
        assert_eq!(seen(&mut agent, &names), only_b, "the second role");
    }
    admin.execute("SELECT wa_revoke_channel($1, 'grants_agent')", &[&a.name]).unwrap();
    agent.batch_execute("SET ROLE grants_agent").unwrap();
    assert_eq!(seen(&mut agent, &names), none, "the first role, after its revoke");
    agent.batch_execute("SET ROLE grants_agent2").unwrap();
    assert_eq!(seen(&mut agent, &names), only_b, "the second role, untouched");

    // Parallel workers evaluate the policy too, each asking for the channels itself, inside a
    // REPEATABLE READ transaction: a revoke committed during it counts from the next statement
    // for them as well (they must not read the grants with the transaction's snapshot).
    let in_parallel = format!(
        "SELECT name FROM wa_channels WHERE name IN ({}) ORDER BY name",
        names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
    );
    agent
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ;
             SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0;
             SET LOCAL min_parallel_table_scan_size = 0; SET LOCAL parallel_leader_participation = off;
             SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off;",
        )
        .unwrap();
    let seen_in_parallel = |agent: &mut Client| -> Vec<String> {
        let plan: serde_json::Value =
            agent.query_one(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {in_parallel}"), &[]).unwrap().get(0);
        assert!(workers_launched(&plan) > 0, "the read runs in parallel workers: {plan}");
        agent.query(&in_parallel, &[]).unwrap().iter().map(|r| r.get(0)).collect()
    };
    assert_eq!(seen_in_parallel(&mut agent), only_b, "in parallel workers");
    admin.execute("SELECT wa_revoke_channel($1, 'grants_agent2')", &[&b.name]).unwrap();
    assert_eq!(
        seen_in_parallel(&mut agent),
        none,
        "in parallel workers, after a revoke during a REPEATABLE READ transaction"
    );
    agent.batch_execute("COMMIT").unwrap();
    admin.execute("SELECT wa_grant_channel($1, 'grants_agent2', 'read')", &[&b.name]).unwrap();

    // A replaced function (an upgrade may change how the answer is made): the kept answers are
    // not used after it.
    agent.batch_execute("SET ROLE grants_agent2").unwrap();
    assert_eq!(seen(&mut agent, &names), only_b, "before the function is replaced");
    let original: String = admin
        .query_one("SELECT pg_get_functiondef('_wa_channels_visible_to(name)'::regprocedure)", &[])
        .unwrap()
        .get(0);
    admin
        .batch_execute(
            "CREATE OR REPLACE FUNCTION _wa_channels_visible_to(viewer name) RETURNS bigint[]
             LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
             AS $$ SELECT '{}'::bigint[] $$",
        )
        .unwrap();
    let replaced = seen(&mut agent, &names);
    admin.batch_execute(&original).unwrap();
    assert_eq!(replaced, none, "after the function was replaced");
    assert_eq!(seen(&mut agent, &names), only_b, "after it was put back");

    // A revoke committed while the answer is being read (the function made slow: it sleeps
    // before it reads the grants). The statement that read it may still see the channel; the
    // next one must not: the answer read across the revoke is not kept.
    let slow = original.replacen("\nBEGIN\n", "\nBEGIN\n    PERFORM pg_catalog.pg_sleep(1);\n", 1);
    assert_ne!(slow, original, "the function's body starts with BEGIN on a line of its own");
    admin.batch_execute(&slow).unwrap();
    let reading = std::thread::spawn({
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let first = seen(&mut agent, &names);
            let next = seen(&mut agent, &names);
            (agent, first, next)
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'postgres' AND wait_event = 'PgSleep'
               AND query LIKE 'SELECT name FROM wa_channels%'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "the agent's read never started sleeping");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    admin.execute("SELECT wa_revoke_channel($1, 'grants_agent2')", &[&b.name]).unwrap();
    let (returned, first, next) = reading.join().unwrap();
    agent = returned;
    admin.batch_execute(&original).unwrap();
    assert!(first == only_b || first.is_empty(), "the statement during the revoke: {first:?}");
    assert_eq!(next, none, "the statement after a revoke made during the read");
    admin.execute("SELECT wa_grant_channel($1, 'grants_agent2', 'read')", &[&b.name]).unwrap();

    // An admin sees a channel added after its answer was kept.
    agent.batch_execute("SET ROLE grants_agent").unwrap();
    admin.execute("SELECT wa_grant_channel(NULL, 'grants_agent', 'admin')", &[]).unwrap();
    assert_eq!(seen(&mut agent, &names), both, "an admin sees both");
    let c = cluster().add_channel("seen-c");
    assert_eq!(
        seen(&mut agent, &[a.name.as_str(), b.name.as_str(), c.name.as_str()]).len(),
        3,
        "an admin sees a channel added since"
    );

    drop(agent);
    drop_roles(&mut admin);
}
