//! Where the load may go: loopback only, over http or over https with the certificates to trust.

/// Refuses anything but a loopback URL (http, or https with a certificate to trust).
pub(super) fn check_loopback(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?}: the load generator only posts to http:// or https://"))?;
    let host = if rest.starts_with('[') {
        rest.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        rest.split(['/', ':']).next().unwrap_or_default().to_string()
    };
    match host.as_str() {
        "127.0.0.1" | "localhost" | "[::1]" => Ok(()),
        _ => Err(format!("{url:?}: the load generator only posts to 127.0.0.1, localhost or [::1]")),
    }
}

/// TLS that trusts only the certificates in `pem` (none given: the system's roots); for the
/// load generator's `--ca-file` and the tests' https clients.
pub fn tls_trusting(pem: Option<&[u8]>) -> Result<ureq::tls::TlsConfig, String> {
    let builder = ureq::tls::TlsConfig::builder();
    let Some(pem) = pem else { return Ok(builder.build()) };
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(format!("--ca-file: {e}"))),
        })
        .collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err("--ca-file holds no PEM certificate".to_string());
    }
    Ok(builder.root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls() {
        assert!(check_loopback("http://127.0.0.1:8080/webhook/demo").is_ok());
        assert!(check_loopback("http://localhost:8080/webhook/demo").is_ok());
        assert!(check_loopback("http://[::1]:8080/webhook/demo").is_ok());
        assert!(check_loopback("http://127.0.0.1.example.com/webhook/demo").is_err());
        assert!(check_loopback("http://10.0.0.1:8080/webhook/demo").is_err());
        assert!(check_loopback("https://127.0.0.1:8080/webhook/demo").is_ok());
        assert!(check_loopback("ftp://127.0.0.1:8080/webhook/demo").is_err());
    }
}
