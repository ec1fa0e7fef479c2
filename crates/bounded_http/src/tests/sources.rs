//! The caps per client address and the allow-list (sources.rs), tried from several loopback
//! addresses.

use super::*;

const HOST_1: [u8; 4] = [127, 0, 0, 1];
const HOST_2: [u8; 4] = [127, 0, 0, 2];
const HOST_3: [u8; 4] = [127, 0, 0, 3];

#[test]
fn a_source_beyond_its_connection_cap_is_told_503_while_others_are_served() {
    let limits = Limits::default();
    limits.sources.max_connections.store(2, Ordering::Relaxed);
    let (addr, refusals) = start_recording(limits, Tls::plain());
    // One idle, one served: accepted in the order they connected, so both are counted.
    let idle = connect_from(HOST_2, addr);
    let mut served = connect_from(HOST_2, addr);
    assert!(exchange(&mut served, b"GET /b HTTP/1.1\r\n\r\n").ends_with("GET /b "));
    let answer = read_all(&mut connect_from(HOST_2, addr));
    assert!(answer.starts_with("HTTP/1.1 503"), "a third connection of a source capped at 2: {answer}");
    assert_eq!(*refusals.lock().unwrap(), [Reason::SourceConnections]);
    let other = exchange(&mut connect_from(HOST_1, addr), b"GET /other HTTP/1.1\r\n\r\n");
    assert!(other.ends_with("GET /other "), "another source was refused: {other}");
    // The idle one's slot comes free when it closes.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_from(HOST_2, addr);
        again.write_all(b"GET /again HTTP/1.1\r\n\r\n").unwrap();
        if read_all_or_one(&mut again).ends_with("GET /again ") {
            break;
        }
        assert!(Instant::now() < deadline, "no slot came free after the source's idle connection closed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connections_that_never_finish_their_tls_handshake_count_against_their_source() {
    let dir = scratch("source-tls");
    let (cert, key, der) = self_signed(&dir, "s");
    let tls = Tls::plain();
    tls.install(Some(load_tls(&cert, &key).unwrap()));
    let limits = Limits::default();
    limits.sources.max_connections.store(2, Ordering::Relaxed);
    let (addr, refusals) = start_recording(limits, tls);
    // A completed handshake proves the two idle ones before it were accepted (and counted).
    let idle = [connect_from(HOST_2, addr), connect_from(HOST_2, addr)];
    let answer = read_all(&mut connect_from(HOST_2, addr));
    assert!(answer.starts_with("HTTP/1.1 503"), "a third connection while two handshakes idle: {answer:?}");
    assert_eq!(*refusals.lock().unwrap(), [Reason::SourceConnections]);
    let served = get_over_tls(addr, &der).unwrap();
    assert!(served.starts_with("HTTP/1.1 200"), "127.0.0.1 was refused: {served}");
    drop(idle);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bodies_are_charged_to_their_source_and_to_all_bodies_together() {
    // 100 bytes per source, 150 for all: each budget refuses what it cannot hold.
    let limits = Limits { body_budget_bytes: 150, ..Limits::default() };
    limits.sources.max_body_bytes.store(100, Ordering::Relaxed);
    let (addr, refusals) = start_recording(limits, Tls::plain());
    let request = |path: &str| format!("POST {path} HTTP/1.1\r\nContent-Length: 60\r\n\r\n{}", "x".repeat(60));
    let mut held_2 = connect_from(HOST_2, addr);
    held_2.write_all(request("/later?source2").as_bytes()).unwrap();
    wait_until_waiting("source2", 1);
    // 127.0.0.2 holds 60: 60 more would take it over its 100, though all bodies hold only 60.
    let refused = exchange(&mut connect_from(HOST_2, addr), request("/more").as_bytes());
    assert!(refused.starts_with("HTTP/1.1 503") && refused.contains("this client address"), "{refused}");
    assert_eq!(*refusals.lock().unwrap(), [Reason::SourceBytes]);
    // Another source has its own 100: 127.0.0.1's 60 fit (all bodies now hold 120 of 150) ...
    let mut held_1 = connect_from(HOST_1, addr);
    held_1.write_all(request("/later?source1").as_bytes()).unwrap();
    wait_until_waiting("source1", 1);
    // ... and a third source's 60 fit its own budget but not the 30 left of all bodies'.
    let refused = exchange(&mut connect_from(HOST_3, addr), request("/third").as_bytes());
    assert!(refused.starts_with("HTTP/1.1 503") && !refused.contains("this client address"), "{refused}");
    assert_eq!(*refusals.lock().unwrap(), [Reason::SourceBytes, Reason::Busy]);
    keep_when_waiting("source2", 1);
    keep_when_waiting("source1", 1);
    assert!(read_all_or_one(&mut held_2).starts_with("HTTP/1.1 200"));
    assert!(read_all_or_one(&mut held_1).starts_with("HTTP/1.1 200"));
    // Both budgets are given back once answered.
    let answer = exchange(&mut connect_from(HOST_2, addr), request("/after").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn addresses_outside_the_allow_list_are_closed_without_a_word() {
    let limits = Limits::default();
    limits.sources.allow(AllowList::parse("127.0.0.1/32, ::1").unwrap());
    let sources = limits.sources.clone();
    let (addr, refusals) = start_recording(limits, Tls::plain());
    let mut stranger = connect_from(HOST_2, addr);
    let _ = stranger.write_all(b"GET /stranger HTTP/1.1\r\n\r\n");
    assert_eq!(read_all(&mut stranger), "", "a source outside the list was answered");
    assert_eq!(*refusals.lock().unwrap(), [Reason::SourceNotAllowed]);
    let allowed = exchange(&mut connect_from(HOST_1, addr), b"GET /allowed HTTP/1.1\r\n\r\n");
    assert!(allowed.ends_with("GET /allowed "), "{allowed}");
    // A new list applies to the next connection.
    sources.allow(AllowList::parse("127.0.0.0/30").unwrap());
    let now = exchange(&mut connect_from(HOST_2, addr), b"GET /now-allowed HTTP/1.1\r\n\r\n");
    assert!(now.ends_with("GET /now-allowed "), "{now}");
}
