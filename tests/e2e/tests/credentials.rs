//! A token set the ways the README advises never leaves the server's memory as text: a call
//! that fails (a misspelt channel) leaves no trace of it in pg_stat_activity or the server
//! log. The literal way, which the README advises against, is shown to leak, so that the test
//! can tell the two apart.

use e2e::{Cluster, poll};
use postgres::Client;
use std::time::Duration;

/// Whether `secret` shows in what another session sees of `pid`'s last statement.
fn in_activity(observer: &mut Client, pid: i32, secret: &str) -> bool {
    let query: String =
        observer.query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid]).unwrap().get(0);
    query.contains(secret)
}

#[test]
fn a_failed_call_leaves_no_trace_of_the_token_but_a_literal_does() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("secret");
    let mut caller = cluster.connect();
    let mut observer = cluster.connect();
    let pid: i32 = caller.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);

    // A bind parameter (any driver; psql 16+: \bind): the statement text holds $2 only.
    let bound = "EAAGboundparameter0000000000001";
    let e = caller.execute("SELECT wa_set_access_token($1, $2)", &[&"no-such-channel", &bound]).unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("unknown channel"), "{e}");
    assert!(!in_activity(&mut observer, pid, bound));

    // A file the server reads: the statement holds the path only. The right file sets the token.
    let from_file = "EAAGfromafileonthedatabaseserver01";
    let path = cluster.write_file("wa_token", format!("{from_file}\n").as_bytes(), 0o600);
    let path = path.to_str().unwrap();
    let e = caller.execute("SELECT wa_set_access_token_from_file('no-such-channel', $1)", &[&path]).unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("unknown channel"), "{e}");
    assert!(!in_activity(&mut observer, pid, from_file));
    caller.execute("SELECT wa_set_access_token_from_file($1, $2)", &[&ch.name, &path]).unwrap();
    let stored: String = caller
        .query_one(
            "SELECT s.access_token FROM wa_channel_secrets s JOIN wa_channels c ON c.id = s.channel_id WHERE c.name = $1",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, from_file);

    // The way the README advises against: a literal, as psql's :'token' produces.
    let literal = "EAAGliteralinthestatementtext00001";
    let e = caller.batch_execute(&format!("SELECT wa_set_access_token('no-such-channel', '{literal}')")).unwrap_err();
    assert!(e.to_string().contains("unknown channel") || e.as_db_error().is_some());
    assert!(in_activity(&mut observer, pid, literal), "pg_stat_activity shows a literal");

    // The server log (log_min_error_statement = error, the default) has the literal's
    // statement, and neither of the others.
    let logged = poll(|| cluster.log().contains(literal).then_some(()));
    assert!(logged.is_some(), "the failed statement with a literal is logged:\n{}", cluster.log());
    let log = cluster.log();
    assert!(!log.contains(bound), "a bound token is in the log:\n{log}");
    assert!(!log.contains(from_file), "a token read from a file is in the log:\n{log}");
}
