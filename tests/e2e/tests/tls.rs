//! https straight from Postgres: the listener terminates TLS with the certificate the settings
//! name, takes a renewed one at `pg_reload_conf()` without dropping anything, and keeps the
//! one it has when a file is bad.

use e2e::{Channel, Cluster, poll};
use std::time::Duration;

/// A self-signed certificate for 127.0.0.1 named `name`: (certificate PEM, key PEM).
fn self_signed(name: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A client that trusts only the certificate in `trusted_pem`.
fn agent_trusting(trusted_pem: &str) -> ureq::Agent {
    let tls = e2e::wa_sim::load::tls_trusting(Some(trusted_pem.as_bytes())).expect("a PEM certificate");
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls)
        .build()
        .into()
}

/// A signed text POST over https, from a client trusting `trusted_pem`: the status, or the error.
fn post_https(cluster: &Cluster, channel: &Channel, trusted_pem: &str, wamid: &str) -> Result<u16, String> {
    let payload =
        e2e::wa_sim::payloads::text_message(&channel.phone_number_id, wamid, "15550002222", "C", "hi", 1_700_000_000);
    let body = serde_json::to_vec(&payload).unwrap();
    let signature = e2e::whatsapp_cloud::signature::sign(channel.app_secret.as_bytes(), &body);
    let url = format!("https://{}/webhook/{}", cluster.listener, channel.name);
    agent_trusting(trusted_pem)
        .post(&url)
        .content_type("application/json")
        .header("X-Hub-Signature-256", &signature)
        .send(&body[..])
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn set_tls(cluster: &Cluster, cert: &str, key: &str) {
    let mut db = cluster.connect();
    // One statement each: ALTER SYSTEM refuses to run in the implicit transaction of a batch.
    db.execute(&format!("ALTER SYSTEM SET whatsapp_channel.tls_cert_file = '{cert}'"), &[]).unwrap();
    db.execute(&format!("ALTER SYSTEM SET whatsapp_channel.tls_key_file = '{key}'"), &[]).unwrap();
    db.execute("SELECT pg_reload_conf()", &[]).unwrap();
}

fn stored(cluster: &Cluster, wamid: &str) -> bool {
    let n: i64 =
        cluster.connect().query_one("SELECT count(*) FROM wa_messages WHERE wamid = $1", &[&wamid]).unwrap().get(0);
    n == 1
}

#[test]
fn https_with_a_self_signed_certificate_renewed_by_reload() {
    let cluster = Cluster::private(Duration::ZERO);
    let ch = cluster.add_channel("tls");
    let (cert_a, key_a) = self_signed("first");
    let (cert_b, key_b) = self_signed("renewed");
    let cert = cluster.write_file("webhook.crt", cert_a.as_bytes(), 0o644);
    let key = cluster.write_file("webhook.key", key_a.as_bytes(), 0o600);
    set_tls(&cluster, cert.to_str().unwrap(), key.to_str().unwrap());

    // From plain HTTP to https at the reload: the handshake and a signed POST.
    let answered = poll(|| post_https(&cluster, &ch, &cert_a, "wamid.tls.1").ok());
    assert_eq!(answered, Some(200), "no https answer after setting the TLS files");
    assert!(stored(&cluster, "wamid.tls.1"));
    assert!(ch.post_signed_to(&cluster, &serde_json::json!({})).is_err(), "plain HTTP was still served");

    // Renewed in place (as certbot does), then reloaded: new connections get the new one.
    cluster.write_file("webhook.crt", cert_b.as_bytes(), 0o644);
    cluster.write_file("webhook.key", key_b.as_bytes(), 0o600);
    cluster.connect().batch_execute("SELECT pg_reload_conf()").unwrap();
    let renewed = poll(|| post_https(&cluster, &ch, &cert_b, "wamid.tls.2").ok().filter(|&s| s == 200));
    assert_eq!(renewed, Some(200), "the renewed certificate was never served");
    assert!(post_https(&cluster, &ch, &cert_a, "wamid.tls.x").is_err(), "the old certificate is still served");
    cluster.wait_for_log("webhook listener TLS certificate (re)loaded from");

    // A bad file: the listener says why and keeps serving the certificate it has.
    let loose = cluster.write_file("loose.key", key_b.as_bytes(), 0o644);
    set_tls(&cluster, cert.to_str().unwrap(), loose.to_str().unwrap());
    cluster.wait_for_log("keeps its previous TLS setting: the private key file");
    assert_eq!(post_https(&cluster, &ch, &cert_b, "wamid.tls.3"), Ok(200));
    set_tls(&cluster, cluster.write_file("empty.crt", b"", 0o644).to_str().unwrap(), key.to_str().unwrap());
    cluster.wait_for_log("holds no PEM certificate");
    assert_eq!(post_https(&cluster, &ch, &cert_b, "wamid.tls.4"), Ok(200));
    assert!(stored(&cluster, "wamid.tls.4"));
    assert!(!cluster.log().contains("PRIVATE KEY-----"), "a key reached the server log");
}
