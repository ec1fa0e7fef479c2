//! The example inbox client (examples/inbox_client.py) against a real cluster: it prints the
//! conversation and messages as they arrive, replies with wa_send_text, shows its reply's
//! status (read from the row a notification names), and after its connection is killed it
//! reconnects and catches up on what arrived meanwhile.

use e2e::wa_sim::payloads;
use e2e::{DEADLINE, cluster, poll};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

#[test]
fn inbox_client_shows_messages_replies_and_catches_up_after_a_reconnect() {
    let ch = cluster().add_channel("client");
    let since: i64 = cluster().connect().query_one("SELECT coalesce(max(id), 0) FROM wa_messages", &[]).unwrap().get(0);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/inbox_client.py");
    // Debian's python3, which has Debian's python3-psycopg (scripts/setup.sh installs it).
    let mut child = Command::new("/usr/bin/python3")
        .args([script, "--dsn", &cluster().dsn(), "--reply", "Thanks, we are on it", "--exit-after", "2"])
        .args(["--since-id", &since.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("running examples/inbox_client.py");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let mut expect = |needle: &str| {
        let deadline = Instant::now() + DEADLINE;
        while !seen.iter().any(|l: &String| l.contains(needle)) {
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
            match lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("the client never printed {needle:?}; it printed:\n{}", seen.join("\n")),
            }
        }
    };
    expect("ready: listening");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let first = payloads::text_message(
        &ch.phone_number_id,
        "wamid.client.1",
        "16505557001",
        "Ada",
        "Is my order shipped?",
        now,
    );
    assert_eq!(ch.post_signed(&first).status, 200);
    expect("conversation:");
    expect("Ada: Is my order shipped?");
    expect("replied to message");
    // The reply's status notification names it; the client reads the row to say where it is.
    expect(" is sent");

    // Cut the client's connection, then let a message arrive while it is away.
    let mut db = cluster().connect();
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'inbox_client'", &[])
        .unwrap();
    let second = payloads::text_message(&ch.phone_number_id, "wamid.client.2", "16505557001", "Ada", "Hello?", now);
    assert_eq!(ch.post_signed(&second).status, 200);
    expect("Ada: Hello?");

    let status = poll(|| child.try_wait().unwrap()).expect("the client exits after two messages");
    assert!(status.success());
    // Both replies reached the Graph API.
    let sent = cluster().graph.wait_for(2, DEADLINE, |r| r.path.contains(&ch.phone_number_id));
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter().all(|r| r.json()["to"] == "+16505557001" && r.json()["text"]["body"] == "Thanks, we are on it")
    );
}
