//! What a send must give for a template: as many body parameters as its placeholders, each
//! named one by name, its header's media or text, and its buttons' URL suffixes and codes.

use serde_json::Value;

/// The `{{n}}` placeholders of a template's BODY component (from Meta's template list), i.e. how
/// many body parameters a send must give.
pub fn template_body_parameters(components: &Value) -> usize {
    let names = placeholders(body_text(components).unwrap_or_default());
    names.into_iter().collect::<std::collections::BTreeSet<_>>().len()
}

/// How many body parameters a send's `components` give.
pub fn given_body_parameters(components: Option<&Value>) -> usize {
    given_body(components).len()
}

/// What is wrong with a send's body parameters for a template whose BODY uses named
/// placeholders (`{{first_name}}`, `parameter_format: NAMED`): each must be given once, as
/// `{"type": "text", "parameter_name": "first_name", "text": "..."}`. `None` when nothing is
/// wrong, or when the template numbers its placeholders (`{{1}}`), which only counts.
pub fn named_body_parameter_problem(template_components: &Value, given: Option<&Value>) -> Option<String> {
    let mut expected: Vec<&str> = Vec::new();
    for name in placeholders(body_text(template_components)?) {
        if !name.is_empty() && !name.chars().all(|c| c.is_ascii_digit()) && !expected.contains(&name) {
            expected.push(name);
        }
    }
    if expected.is_empty() {
        return None;
    }
    let wrong = named_parameter_mistakes(&expected, given_body(given));
    (!wrong.is_empty())
        .then(|| format!("expects the named body parameters {} ({})", expected.join(", "), wrong.join("; ")))
}

/// How a send's body `parameters` miss the `expected` names: names missing, not in the
/// template or given twice, and parameters without a name.
fn named_parameter_mistakes(expected: &[&str], parameters: &[Value]) -> Vec<String> {
    let mut seen: Vec<&str> = Vec::new();
    let (mut twice, mut unknown, mut unnamed) = (Vec::new(), Vec::new(), 0);
    for p in parameters {
        match p.get("parameter_name").and_then(Value::as_str) {
            None => unnamed += 1,
            Some(n) if seen.contains(&n) => twice.push(n),
            Some(n) => {
                seen.push(n);
                if !expected.contains(&n) {
                    unknown.push(n);
                }
            }
        }
    }
    let missing: Vec<&str> = expected.iter().copied().filter(|e| !seen.contains(e)).collect();
    let mut wrong = Vec::new();
    for (what, names) in [("missing ", missing), ("not in the template: ", unknown), ("given twice: ", twice)] {
        if !names.is_empty() {
            wrong.push(format!("{what}{}", names.join(", ")));
        }
    }
    if unnamed > 0 {
        wrong.push(format!("{unnamed} without a parameter_name"));
    }
    wrong
}

/// The text of a template's BODY component, whatever the case of its `type`.
fn body_text(components: &Value) -> Option<&str> {
    components
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("BODY")))?
        .get("text")?
        .as_str()
}

/// What is between each `{{` and `}}` of `text`, trimmed, in order, repeats included.
fn placeholders(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find("}}") else { break };
        names.push(rest[..end].trim());
        rest = &rest[end + 2..];
    }
    names
}

/// The `parameters` of the `body` component of a send's `components`.
fn given_body(components: Option<&Value>) -> &[Value] {
    components
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("body")))
        .and_then(|b| b.get("parameters"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// What a send lacks for a template's HEADER and BUTTONS, which Meta refuses at send time
/// (error 132000) or delivers broken: a media header (IMAGE, VIDEO, DOCUMENT, LOCATION) needs
/// its media in a `header` component, a TEXT header with a placeholder its text, a URL button
/// with a placeholder (`https://shop.example/{{1}}`) its URL suffix, and a COPY_CODE button its
/// code, each in a `button` component with that button's `index`. `None` when nothing is missing.
pub fn header_and_button_problem(template_components: &Value, given: Option<&Value>) -> Option<String> {
    let template = template_components.as_array()?;
    let given: &[Value] = given.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let mut missing = Vec::new();
    if let Some(header) = template.iter().find(|c| kind_of(c).as_deref() == Some("header")) {
        missing.extend(missing_header(header, given));
    }
    let buttons = template
        .iter()
        .find(|c| kind_of(c).as_deref() == Some("buttons"))
        .and_then(|b| b.get("buttons"))
        .and_then(Value::as_array);
    for (index, button) in buttons.into_iter().flatten().enumerate() {
        missing.extend(missing_button(index, button, given));
    }
    (!missing.is_empty()).then(|| format!("needs {}", missing.join("; and ")))
}

/// A component's `type` in lower case: Meta lists templates in capitals, sends use lower case.
fn kind_of(c: &Value) -> Option<String> {
    c.get("type").and_then(Value::as_str).map(str::to_ascii_lowercase)
}

/// What a send lacks for the template's `header`: its media, or the text of its placeholder.
fn missing_header(header: &Value, given: &[Value]) -> Option<String> {
    let format = header.get("format").and_then(Value::as_str).unwrap_or("TEXT").to_ascii_lowercase();
    let parameter_types: Vec<String> = given
        .iter()
        .find(|c| kind_of(c).as_deref() == Some("header"))
        .and_then(|h| h.get("parameters"))
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(|p| p.get("type").and_then(Value::as_str)).map(str::to_ascii_lowercase).collect())
        .unwrap_or_default();
    match format.as_str() {
        "image" | "video" | "document" | "location" if !parameter_types.contains(&format) => Some(format!(
            "its {format} header (components => '[{{\"type\":\"header\",\"parameters\":[{{\"type\":\"{format}\",\"{format}\":{}}}]}}, ...]')",
            if format == "location" { "{\"latitude\":..,\"longitude\":..}" } else { "{\"id\":\"<media id>\"}" }
        )),
        "text"
            if header.get("text").and_then(Value::as_str).is_some_and(|t| t.contains("{{"))
                && !parameter_types.iter().any(|t| t == "text") =>
        {
            Some("its header text (a header component with one text parameter)".to_string())
        }
        _ => None,
    }
}

/// What a send lacks for button `index` of the template: the suffix of a URL with a
/// placeholder, or a coupon code; other buttons need nothing.
fn missing_button(index: usize, button: &Value, given: &[Value]) -> Option<String> {
    let kind = button.get("type").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
    let needs = match kind.as_str() {
        "url" if button.get("url").and_then(Value::as_str).is_some_and(|u| u.contains("{{")) => "url",
        "copy_code" => "copy_code",
        _ => return None,
    };
    let given_here = given.iter().any(|c| {
        kind_of(c).as_deref() == Some("button")
            && c.get("sub_type").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case(needs))
            && match c.get("index") {
                Some(Value::String(i)) => i.trim() == index.to_string(),
                Some(Value::Number(i)) => i.as_u64() == Some(index as u64),
                _ => false,
            }
    });
    if given_here {
        return None;
    }
    let what = if needs == "url" { "URL suffix" } else { "coupon code" };
    let parameter = if needs == "url" {
        "\"type\":\"text\",\"text\":\"...\""
    } else {
        "\"type\":\"coupon_code\",\"coupon_code\":\"...\""
    };
    Some(format!(
        "the {what} of button {index} (components => '[..., {{\"type\":\"button\",\"sub_type\":\"{needs}\",\"index\":\"{index}\",\"parameters\":[{{{parameter}}}]}}]')"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_template_body_parameters() {
        let template = json!([{"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
                              {"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships {{3}}. Thanks, {{1}}!"}]);
        assert_eq!(template_body_parameters(&template), 3);
        assert_eq!(template_body_parameters(&json!([{"type": "BODY", "text": "Hello world"}])), 0);
        let given =
            json!([{"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "42"}]}]);
        assert_eq!(given_body_parameters(Some(&given)), 2);
        assert_eq!(given_body_parameters(None), 0);
    }

    #[test]
    fn checks_named_template_parameters() {
        // Named template parameters (parameter_format NAMED).
        let template =
            serde_json::json!([{ "type": "BODY", "text": "Hi {{first_name}}, order {{order_id}} ({{first_name}})" }]);
        let body = |params: serde_json::Value| serde_json::json!([{ "type": "body", "parameters": params }]);
        let named = |n: &str| serde_json::json!({ "type": "text", "parameter_name": n, "text": "x" });
        let ok = body(serde_json::json!([named("order_id"), named("first_name")]));
        assert_eq!(named_body_parameter_problem(&template, Some(&ok)), None);
        let bad = body(
            serde_json::json!([named("first_name"), named("first_name"), named("coupon"), { "type": "text", "text": "y" }]),
        );
        assert_eq!(
            named_body_parameter_problem(&template, Some(&bad)).as_deref(),
            Some(
                "expects the named body parameters first_name, order_id (missing order_id; not in the template: coupon; given twice: first_name; 1 without a parameter_name)"
            )
        );
        assert!(named_body_parameter_problem(&template, None).unwrap().contains("missing first_name, order_id"));
        let numbered = serde_json::json!([{ "type": "BODY", "text": "Hi {{1}}" }]);
        assert_eq!(named_body_parameter_problem(&numbered, None), None, "numbered templates only count");
    }

    #[test]
    fn media_headers_url_and_copy_code_buttons_must_be_given() {
        let template = json!([
            { "type": "HEADER", "format": "IMAGE" },
            { "type": "BODY", "text": "Your order shipped" },
            { "type": "BUTTONS", "buttons": [
                { "type": "QUICK_REPLY", "text": "Thanks" },
                { "type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}" },
                { "type": "URL", "text": "Shop", "url": "https://shop.example/" },
                { "type": "COPY_CODE", "example": "SAVE10" } ] }
        ]);
        let problem = header_and_button_problem(&template, None).unwrap();
        assert!(problem.contains("its image header"), "{problem}");
        assert!(problem.contains("URL suffix of button 1"), "{problem}");
        assert!(problem.contains("coupon code of button 3"), "{problem}");
        assert!(!problem.contains("button 2") && !problem.contains("button 0"), "{problem}");
        let given = json!([
            { "type": "header", "parameters": [{ "type": "image", "image": { "id": "m1" } }] },
            { "type": "button", "sub_type": "url", "index": "1", "parameters": [{ "type": "text", "text": "A-42" }] },
            { "type": "button", "sub_type": "COPY_CODE", "index": 3, "parameters": [{ "type": "coupon_code", "coupon_code": "SAVE10" }] }
        ]);
        assert_eq!(header_and_button_problem(&template, Some(&given)), None);
        let text_header = json!([{ "type": "HEADER", "format": "TEXT", "text": "Order {{1}}" }]);
        assert!(header_and_button_problem(&text_header, None).unwrap().contains("header text"));
        let plain = json!([{ "type": "HEADER", "format": "TEXT", "text": "Hello" }, { "type": "BODY", "text": "Hi" }]);
        assert_eq!(header_and_button_problem(&plain, None), None);
    }
}
