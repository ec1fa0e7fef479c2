//! Metrics: `GET /metrics` at whatsapp_channel.metrics_address, in Prometheus' text format
//! (checked by promtool), with the figures of real traffic, and the same samples in the
//! wa_metrics view; the workers say what they do in pg_stat_activity.

use e2e::{Cluster, free_port, http_get, http_post, poll, wa_sim};
use std::process::{Command, Stdio};

/// The value of one sample line `name{labels} value` in an exposition.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_real_traffic_and_pass_promtool() {
    let address = format!("127.0.0.1:{}", free_port());
    let cluster = Cluster::private_with(&format!("whatsapp_channel.metrics_address = '{address}'"));
    let url = format!("http://{address}/metrics");
    let up = poll(|| e2e::try_http_get(&url).ok().filter(|a| a.status == 200));
    assert!(up.is_some(), "no /metrics at {url}:\n{}", cluster.log());

    let ch = cluster.add_channel("metrics");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for i in 0..3 {
        let payload = wa_sim::payloads::text_message(
            &ch.phone_number_id,
            &format!("wamid.metrics.{i}"),
            "15550002222",
            "Metered",
            "hi",
            now,
        );
        assert_eq!(ch.post_signed_to(&cluster, &payload).unwrap().status, 200);
    }
    let bad = http_post(&cluster.webhook_url(&ch.name), b"{}", Some("sha256=00"));
    assert_eq!(bad.status, 401);
    assert_eq!(http_get(&cluster.webhook_url("no-such-channel")).status, 404);
    let mut db = cluster.connect();
    let id: i64 = db.query_one("SELECT wa_send_text($1, '15550002222', 'metered reply')", &[&ch.name]).unwrap().get(0);

    let channel = format!("channel=\"{}\"", ch.name);
    let scraped = poll(|| {
        let text = http_get(&url).body;
        let sent = sample(&text, &format!("whatsapp_channel_sends_total{{{channel},result=\"sent\"}}"))?;
        let rejected = sample(
            &text,
            &format!("whatsapp_channel_webhook_posts_total{{{channel},outcome=\"signature_mismatch\"}}"),
        )?;
        (sent >= 1.0 && rejected >= 1.0).then_some(text)
    })
    .unwrap_or_else(|| panic!("message {id} never counted as sent:\n{}", http_get(&url).body));

    assert_eq!(
        sample(&scraped, &format!("whatsapp_channel_webhook_posts_total{{{channel},outcome=\"stored\"}}")),
        Some(3.0)
    );
    assert_eq!(sample(&scraped, "whatsapp_channel_messages_stored_total"), Some(3.0));
    assert_eq!(sample(&scraped, "whatsapp_channel_webhook_refused_total{reason=\"unknown_channel\"}"), Some(1.0));
    assert_eq!(sample(&scraped, "whatsapp_channel_send_seconds_count"), Some(1.0));
    assert!(sample(&scraped, "whatsapp_channel_listener_batch_posts_count").unwrap() >= 1.0);
    assert_eq!(sample(&scraped, "whatsapp_channel_worker_up{worker=\"delivery\"}"), Some(1.0));
    assert_eq!(sample(&scraped, "whatsapp_channel_worker_up{worker=\"webhook listener 1\"}"), Some(1.0));
    // The queue gauge follows the queue: nothing is left once the message is sent.
    let drained = poll(|| {
        let text = http_get(&url).body;
        (sample(&text, &format!("whatsapp_channel_queue_depth{{{channel}}}")) == Some(0.0)).then_some(())
    });
    assert!(drained.is_some(), "queue_depth never went back to 0:\n{}", http_get(&url).body);

    // What promtool, Prometheus' own checker, says of the format.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    use std::io::Write;
    promtool.stdin.take().unwrap().write_all(scraped.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{scraped}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The same figures as rows.
    let stored: f64 = db
        .query_one(
            "SELECT value FROM wa_metrics WHERE metric = 'whatsapp_channel_webhook_posts_total'
                AND labels = jsonb_build_object('channel', $1::text, 'outcome', 'stored')",
            &[&ch.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 3.0);

    // A monitoring role sees a channel's samples only once it may read the channel (README,
    // "Roles"); the samples of the whole listener it sees either way.
    db.batch_execute(
        "CREATE ROLE metrics_monitoring;
         GRANT SELECT ON wa_metrics TO metrics_monitoring;
         GRANT EXECUTE ON FUNCTION _wa_metrics() TO metrics_monitoring;",
    )
    .unwrap();
    let seen_as_monitoring = |db: &mut postgres::Client| -> (i64, i64) {
        db.batch_execute("SET ROLE metrics_monitoring").unwrap();
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE labels ->> 'channel' = $1), count(*) FILTER (WHERE NOT labels ? 'channel')
                   FROM wa_metrics",
                &[&ch.name],
            )
            .unwrap();
        db.batch_execute("RESET ROLE").unwrap();
        (row.get(0), row.get(1))
    };
    let (channel_samples, global_samples) = seen_as_monitoring(&mut db);
    assert_eq!(channel_samples, 0, "a role without a grant sees the channel's samples");
    assert!(global_samples > 0);
    db.execute("SELECT wa_grant_channel($1, 'metrics_monitoring', 'read')", &[&ch.name]).unwrap();
    let (channel_samples, _) = seen_as_monitoring(&mut db);
    assert!(channel_samples > 0, "a role granted read does not see the channel's samples");

    // And the workers say what they do: idle, once the delivery worker has finished its turn
    // (it may be recording or claiming at the moment of a first look).
    let mut states = || -> Vec<(String, String)> {
        db.query(
            "SELECT backend_type, coalesce(query, '') FROM pg_stat_activity
              WHERE backend_type IN ('whatsapp_channel webhook listener', 'whatsapp_channel delivery') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let idle = poll(|| {
        let s = states();
        (s.len() == 2 && s[0].1.contains("waiting for queued messages") && s[1].1.contains("waiting for webhooks on"))
            .then_some(())
    });
    assert!(idle.is_some(), "{:?}", states());
}

#[test]
fn metrics_are_off_unless_an_address_is_set() {
    let cluster = Cluster::private_with("");
    cluster.wait_for_log("maintenance worker started");
    let rows: i64 = cluster.connect().query_one("SELECT count(*) FROM wa_metrics", &[]).unwrap().get(0);
    assert!(rows > 0, "wa_metrics works without the endpoint");
    assert!(!cluster.log().contains("Prometheus metrics on"), "{}", cluster.log());
}
