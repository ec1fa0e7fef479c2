//! HTTP requests to the listener, answered or not.

use std::time::Duration;

/// An HTTP answer: status and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn http_get(url: &str) -> Answer {
    try_http_get(url).unwrap()
}

/// A GET that may fail to get any answer (nothing listens yet).
pub fn try_http_get(url: &str) -> Result<Answer, String> {
    let mut r = agent().get(url).call().map_err(|e| e.to_string())?;
    Ok(Answer { status: r.status().as_u16(), body: r.body_mut().read_to_string().map_err(|e| e.to_string())? })
}

/// POSTs `body` with the given `X-Hub-Signature-256` header (none if `None`).
pub fn http_post(url: &str, body: &[u8], signature: Option<&str>) -> Answer {
    try_http_post(url, body, signature).unwrap()
}

/// A POST that may fail to get any answer (the server is down, the connection drops).
pub fn try_http_post(url: &str, body: &[u8], signature: Option<&str>) -> Result<Answer, String> {
    let mut request = agent().post(url).content_type("application/json");
    if let Some(s) = signature {
        request = request.header("X-Hub-Signature-256", s);
    }
    let mut r = request.send(body).map_err(|e| e.to_string())?;
    Ok(Answer { status: r.status().as_u16(), body: r.body_mut().read_to_string().map_err(|e| e.to_string())? })
}
