//! Channel grants seen from another session: a grant, a revoke and a change of role membership
//! made and committed elsewhere take effect on an agent's next statement, although its session
//! keeps the answer of `_wa_visible_channels` between statements (src/channels/access.rs), and
//! also after a REPEATABLE READ transaction, whose old snapshot must not be what is kept.

use e2e::cluster;
use postgres::Client;

/// The names, among `names`, of the channels the agent's session sees (sorted).
fn seen(agent: &mut Client, names: &[&str]) -> Vec<String> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    agent
        .query("SELECT name FROM wa_channels WHERE name = ANY($1) ORDER BY name", &[&names])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn grants_revokes_and_memberships_from_other_sessions_take_effect_on_the_next_statement() {
    let a = cluster().add_channel("seen-a");
    let b = cluster().add_channel("seen-b");
    let names = [a.name.as_str(), b.name.as_str()];
    let mut admin = cluster().connect();
    admin
        .batch_execute(
            "DROP ROLE IF EXISTS grants_agent; DROP ROLE IF EXISTS grants_team;
             CREATE ROLE grants_agent; CREATE ROLE grants_team;
             GRANT SELECT ON wa_channels TO grants_agent;",
        )
        .unwrap();
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
        assert_eq!(seen(&mut agent, &names), [a.name.clone()], "after another session's grant");
    }

    admin.batch_execute("GRANT grants_team TO grants_agent").unwrap();
    for _ in 0..2 {
        assert_eq!(seen(&mut agent, &names), [a.name.clone(), b.name.clone()], "as a member of a granted role");
    }
    admin.batch_execute("REVOKE grants_team FROM grants_agent").unwrap();
    for _ in 0..2 {
        assert_eq!(seen(&mut agent, &names), [a.name.clone()], "no longer a member");
    }

    // A grant committed during the agent's REPEATABLE READ transaction counts from its next
    // statement, as a GRANT on a table does; and what that transaction read with its old
    // snapshot is not kept beyond it: the revoke after it counts too.
    agent.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    assert_eq!(seen(&mut agent, &names), [a.name.clone()]);
    admin.execute("SELECT wa_grant_channel($1, 'grants_agent', 'read')", &[&b.name]).unwrap();
    assert_eq!(seen(&mut agent, &names), [a.name.clone(), b.name.clone()], "a grant inside a snapshot");
    agent.batch_execute("COMMIT").unwrap();
    assert_eq!(seen(&mut agent, &names), [a.name.clone(), b.name.clone()]);
    admin.execute("SELECT wa_revoke_channel($1, 'grants_agent')", &[&b.name]).unwrap();
    assert_eq!(seen(&mut agent, &names), [a.name.clone()], "after the revoke");

    admin.execute("SELECT wa_revoke_channel($1, 'grants_agent')", &[&a.name]).unwrap();
    for _ in 0..2 {
        assert_eq!(seen(&mut agent, &names), none, "after every revoke");
    }

    // An admin sees a channel added after its answer was kept.
    admin.execute("SELECT wa_grant_channel(NULL, 'grants_agent', 'admin')", &[]).unwrap();
    let seen_before = seen(&mut agent, &names).len();
    assert_eq!(seen_before, 2, "an admin sees both");
    let c = cluster().add_channel("seen-c");
    assert_eq!(
        seen(&mut agent, &[a.name.as_str(), b.name.as_str(), c.name.as_str()]).len(),
        3,
        "an admin sees a channel added since"
    );

    drop(agent);
    admin
        .batch_execute(
            "DELETE FROM wa_channel_grants WHERE grantee IN ('grants_agent'::regrole, 'grants_team'::regrole);
             DROP OWNED BY grants_agent, grants_team; DROP ROLE grants_agent, grants_team;",
        )
        .unwrap();
}
