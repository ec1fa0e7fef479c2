//! Message templates as Meta lists them: one page of `GET /{waba-id}/message_templates`.

use super::{GraphError, error_answer};
use serde_json::{Value, json};

/// A message template as Meta lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: Option<String>,
    pub name: String,
    pub language: String,
    pub status: String,
    pub category: Option<String>,
    pub components: Value,
}

/// One page of `GET /{waba-id}/message_templates`: its templates and the next page's URL.
pub fn parse_templates(http_status: u16, body: &[u8]) -> Result<(Vec<Template>, Option<String>), GraphError> {
    let json: Value = match serde_json::from_slice(body) {
        Ok(j) if (200..300).contains(&http_status) => j,
        _ => return Err(error_answer(http_status, body)),
    };
    let text = |t: &Value, k: &str| {
        t.get(k).and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())))
    };
    let templates = json["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some(Template {
                id: text(t, "id"),
                name: text(t, "name")?,
                language: text(t, "language")?,
                status: text(t, "status").unwrap_or_else(|| "UNKNOWN".into()),
                category: text(t, "category"),
                components: t.get("components").cloned().unwrap_or_else(|| json!([])),
            })
        })
        .collect();
    Ok((templates, json.pointer("/paging/next").and_then(Value::as_str).map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_template_lists_and_their_errors() {
        let page = br#"{"data":[{"name":"order_update","language":"en_US","status":"APPROVED","category":"UTILITY","id":"594425479261596",
            "components":[{"type":"BODY","text":"Hi {{1}}"}]},{"status":"APPROVED"}],"paging":{"next":"https://graph/next"}}"#;
        let (list, next) = parse_templates(200, page).unwrap();
        assert_eq!(list.len(), 1, "an entry without a name is skipped");
        assert_eq!((list[0].name.as_str(), list[0].status.as_str()), ("order_update", "APPROVED"));
        assert_eq!(next.as_deref(), Some("https://graph/next"));
        let err =
            parse_templates(400, br#"{"error":{"message":"(#100) Tried accessing nonexisting field","code":100}}"#)
                .unwrap_err();
        assert_eq!(err.code, Some(100));
    }
}
