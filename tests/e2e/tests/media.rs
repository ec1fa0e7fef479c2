//! Media (issue 6): every inbound image, audio, video, document or sticker becomes a download
//! job, done by the delivery worker, never on the webhook's path; and wa_upload_media() for
//! sending by id.

use e2e::wa_sim::graph::sha256_base64;
use e2e::{Channel, Cluster, DEADLINE, Listener, cluster, poll, poll_within};
use serde_json::json;
use std::time::{Duration, Instant};

/// Well within the delivery worker's 10 s safety net, and far above what a download from wa-sim
/// takes: a download that ends later waited for that net, not for its wake or its due time.
const PROMPTLY: Duration = Duration::from_secs(5);

fn post_image(cluster: &Cluster, ch: &Channel, wamid: &str, media_id: &str, sha256: &str) -> i64 {
    let payload = e2e::wa_sim::payloads::envelope(
        &ch.phone_number_id,
        json!({ "contacts": [{ "profile": { "name": "Pia" }, "wa_id": "16505556001" }],
                "messages": [{ "from": "16505556001", "id": wamid, "timestamp": "1749416383", "type": "image",
                               "image": { "caption": "my receipt", "mime_type": "image/jpeg", "sha256": sha256, "id": media_id } }] }),
    );
    assert_eq!(ch.post_signed_to(cluster, &payload).unwrap().status, 200);
    cluster.connect().query_one("SELECT id FROM wa_messages WHERE wamid = $1", &[&wamid]).unwrap().get(0)
}

/// (status, error, attempts) of the message's download job, once it has ended.
fn job_end(cluster: &Cluster, message_id: i64) -> (String, Option<String>, i32) {
    job_end_within(cluster, message_id, DEADLINE)
}

fn job_end_within(cluster: &Cluster, message_id: i64, within: Duration) -> (String, Option<String>, i32) {
    poll_within(within, || {
        let r = cluster
            .connect()
            .query_one("SELECT status, error, attempts FROM wa_media WHERE message_id = $1", &[&message_id])
            .unwrap();
        let status: String = r.get(0);
        matches!(status.as_str(), "done" | "failed" | "skipped").then(|| (status, r.get(1), r.get(2)))
    })
    .unwrap_or_else(|| panic!("the download of message {message_id} had not ended after {within:?}"))
}

#[test]
fn an_inbound_photo_is_downloaded_checked_and_announced() {
    let ch = cluster().add_channel("media-ok");
    let bytes = b"\xff\xd8\xff\xe0 a tiny jpeg".to_vec();
    let media_id = cluster().graph.add_media("image/jpeg", bytes.clone());
    let mut listener = Listener::new(&["wa_media"]);
    let posted = Instant::now();
    let id = post_image(cluster(), &ch, "wamid.media.ok", &media_id, &sha256_base64(&bytes));
    let (_, note) = listener.next_matching(|_, p| p["message_id"] == id).expect("a wa_media notification");
    assert_eq!(note["channel_id"], ch.id);
    // The commit that stored the photo woke the worker to look for media (_wa_wake_media).
    assert!(posted.elapsed() < PROMPTLY, "the download waited {:?} for the worker's safety net", posted.elapsed());
    let db = &mut cluster().connect();
    let status: String = db.query_one("SELECT status FROM wa_media WHERE message_id = $1", &[&id]).unwrap().get(0);
    assert_eq!(status, "done", "notified before the download ended");
    let content: Vec<u8> = db.query_one("SELECT wa_media_content($1)", &[&id]).unwrap().get(0);
    assert_eq!(content, bytes);
    let (mime, size): (String, i64) = {
        let r = db.query_one("SELECT mime_type, size FROM wa_media WHERE message_id = $1", &[&id]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((mime.as_str(), size), ("image/jpeg", bytes.len() as i64));
    // The message itself was stored at once, with its caption.
    let body: String = db.query_one("SELECT body FROM wa_messages WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(body, "my receipt");
}

#[test]
fn a_file_that_does_not_match_its_sha256_fails_and_the_message_stays() {
    let ch = cluster().add_channel("media-sha");
    let media_id = cluster().graph.add_media("image/jpeg", b"the real bytes".to_vec());
    let id = post_image(cluster(), &ch, "wamid.media.sha", &media_id, &sha256_base64(b"other bytes"));
    let (status, error, _) = job_end(cluster(), id);
    assert_eq!(status, "failed");
    assert!(error.unwrap().contains("does not match the webhook's"));
    let kept: i64 =
        cluster().connect().query_one("SELECT count(*) FROM wa_messages WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(kept, 1);
}

#[test]
fn an_expired_url_is_refreshed_and_the_download_succeeds() {
    let ch = cluster().add_channel("media-expired");
    let bytes = b"voice note".to_vec();
    let media_id = cluster().graph.add_media("audio/ogg", bytes.clone());
    cluster().graph.expire_next_download(&media_id);
    let id = post_image(cluster(), &ch, "wamid.media.expired", &media_id, &sha256_base64(&bytes));
    // The retry goes at its time, 1-2 s after the first attempt (_wa_next_media_due_in), not at
    // the worker's safety net.
    let (status, _, attempts) = job_end_within(cluster(), id, PROMPTLY);
    assert_eq!((status.as_str(), attempts), ("done", 2));
}

#[test]
fn a_media_id_meta_no_longer_has_fails_with_the_reason() {
    let ch = cluster().add_channel("media-gone");
    let id = post_image(cluster(), &ch, "wamid.media.gone", "4242424242", "AAAA");
    let (status, error, attempts) = job_end(cluster(), id);
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(error.unwrap().contains("no longer exists at Meta"));
}

#[test]
fn a_refused_token_pauses_the_channel_and_the_download_waits_for_a_new_one() {
    let ch = cluster().add_channel("media-token");
    let bytes = b"a photo sent overnight".to_vec();
    let media_id = cluster().graph.add_media("image/jpeg", bytes.clone());
    // Meta now takes another token for this number than the channel's, as when a temporary
    // token expires.
    let new_token = "EAAGmediatokenreplaced0000000000";
    cluster().graph.require_token(&ch.phone_number_id, new_token);
    let id = post_image(cluster(), &ch, "wamid.media.token", &media_id, &sha256_base64(&bytes));
    // The channel is paused, saying why, as a refused send pauses it; the download waits, its
    // attempt given back, instead of using up its attempts and failing.
    let db = &mut cluster().connect();
    let (reason, status, attempts, error) = poll(|| {
        let r = db
            .query_one(
                "SELECT c.paused_reason, j.status, j.attempts, j.error
                   FROM wa_media j JOIN wa_channels c ON c.id = j.channel_id WHERE j.message_id = $1",
                &[&id],
            )
            .unwrap();
        let reason: Option<String> = r.get(0);
        reason.map(|reason| (reason, r.get::<_, String>(1), r.get::<_, i32>(2), r.get::<_, Option<String>>(3)))
    })
    .expect("the refused token never paused the channel");
    assert!(reason.contains("access token has expired or is invalid"), "{reason}");
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    assert!(error.unwrap().contains("Invalid OAuth access token"));
    // A new token: the download goes at once, not after its wait (5 minutes).
    db.execute("SELECT wa_set_access_token($1, $2)", &[&ch.name, &new_token]).unwrap();
    let (status, _, attempts) = job_end_within(cluster(), id, PROMPTLY);
    assert_eq!((status.as_str(), attempts), ("done", 1));
    let content: Vec<u8> = db.query_one("SELECT wa_media_content($1)", &[&id]).unwrap().get(0);
    assert_eq!(content, bytes);
    let paused: bool =
        db.query_one("SELECT paused_at IS NOT NULL FROM wa_channels WHERE id = $1", &[&ch.id]).unwrap().get(0);
    assert!(!paused, "wa_set_access_token resumes the channel");
}

/// ALTER SYSTEM + reload, then waits until a new session sees the value: by then the
/// postmaster has reloaded and signalled the workers, which re-read it before their next claim.
fn reconfigure(cluster: &Cluster, setting: &str, value: &str) {
    let name = format!("whatsapp_channel.{setting}");
    let mut db = cluster.connect();
    db.execute(&format!("ALTER SYSTEM SET {name} = '{value}'"), &[]).unwrap();
    db.execute("SELECT pg_reload_conf()", &[]).unwrap();
    let seen = poll(|| {
        let now: String = cluster.connect().query_one("SELECT current_setting($1)", &[&name]).unwrap().get(0);
        (now == value || now.trim_end_matches("B") == value).then_some(())
    });
    assert!(seen.is_some(), "{name} never became {value}");
}

#[test]
fn files_over_the_size_limit_and_metadata_only_are_skipped() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("media-limit");
    let mut db = cluster.connect();
    reconfigure(&cluster, "max_media_bytes", "10");
    let big = cluster.graph.add_media("video/mp4", vec![7u8; 100]);
    let id = post_image(&cluster, &ch, "wamid.media.big", &big, &sha256_base64(&[7u8; 100]));
    let (status, error, _) = job_end(&cluster, id);
    assert_eq!(status, "skipped");
    assert!(error.unwrap().contains("larger than whatsapp_channel.max_media_bytes"));
    reconfigure(&cluster, "max_media_bytes", "1000");
    // A typo is refused, naming the values there are, instead of meaning one of them.
    let typo = db.execute("ALTER SYSTEM SET whatsapp_channel.media_download = 'metdata'", &[]).unwrap_err();
    let typo = typo.as_db_error().unwrap();
    assert!(typo.message().contains("invalid value"), "{typo:?}");
    assert!(typo.hint().unwrap_or_default().contains("content, metadata"), "{typo:?}");
    reconfigure(&cluster, "media_download", "metadata");
    let small = cluster.graph.add_media("image/png", vec![1u8; 5]);
    let id = post_image(&cluster, &ch, "wamid.media.meta", &small, &sha256_base64(&[1u8; 5]));
    let (status, error, _) = job_end(&cluster, id);
    assert_eq!(status, "skipped");
    assert!(error.unwrap().contains("only metadata"));
    let size: i64 = db.query_one("SELECT size FROM wa_media WHERE message_id = $1", &[&id]).unwrap().get(0);
    assert_eq!(size, 5);
}

#[test]
fn an_uploaded_file_is_sent_by_its_id() {
    let ch = cluster().add_channel("media-upload");
    ch.customer_writes("16505556002");
    let mut db = cluster().connect();
    let bytes = b"\x89PNG a tiny png".to_vec();
    let media_id: String =
        db.query_one("SELECT wa_upload_media($1, $2, 'image/png', 'chart.png')", &[&ch.name, &bytes]).unwrap().get(0);
    assert_eq!(cluster().graph.media_bytes(&media_id), Some(bytes));
    db.execute("SELECT wa_send_media($1, '16505556002', 'image', $2, caption => 'Your chart')", &[&ch.name, &media_id])
        .unwrap();
    let got = cluster()
        .graph
        .wait_for(1, DEADLINE, |r| r.path.ends_with("/messages") && r.path.contains(&ch.phone_number_id));
    assert_eq!(got[0].json()["image"], json!({ "id": media_id, "caption": "Your chart" }));
    let e = db.query("SELECT wa_upload_media($1, ''::bytea, 'image/png')", &[&ch.name]).unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("the file is empty"));
}

#[test]
fn the_simulators_own_photo_downloads_as_the_demo_shows_it() {
    // `wa-sim trigger image` (the run command's tour) sends the simulator's demo photo: a real
    // PNG that every wa-sim graph serves, so the web inbox shows the picture.
    let ch = cluster().add_channel("media-demo");
    let customer = e2e::wa_sim::payloads::Customer { wa_id: "16505556009".into(), name: "Demo".into() };
    let value =
        e2e::wa_sim::payloads::message_value("image", "wamid.media.demo", &customer, "a photo", 1_749_416_383).unwrap();
    assert_eq!(ch.post_signed(&e2e::wa_sim::payloads::envelope(&ch.phone_number_id, value)).status, 200);
    let id: i64 = cluster()
        .connect()
        .query_one("SELECT id FROM wa_messages WHERE wamid = 'wamid.media.demo'", &[])
        .unwrap()
        .get(0);
    let (status, error, _) = job_end(cluster(), id);
    assert_eq!(status, "done", "{error:?}");
    let (mime, content): (String, Vec<u8>) = {
        let r = cluster()
            .connect()
            .query_one("SELECT mime_type, content FROM wa_media WHERE message_id = $1", &[&id])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(mime, "image/png");
    assert_eq!(content, e2e::wa_sim::demo_media::bytes("image/png"));
}
