//! Agent configs as the API shows and changes them: secret-like fields
//! redacted at any depth, and JSON merge patches where the placeholder keeps
//! what is stored.

use serde_json::{Map, Value};

/// What a redacted value reads as; sent back in a patch, it keeps the stored
/// value.
pub const PLACEHOLDER: &str = "********";

/// Whether a key names something secret: its letters (case, `_` and `-`
/// ignored) contain one of the secret words.
pub fn is_secret_key(key: &str) -> bool {
    let folded: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const WORDS: &[&str] = &[
        "token",
        "secret",
        "password",
        "passwd",
        "passphrase",
        "credential",
        "privatekey",
        "apikey",
        "accesskey",
        "authorization",
        "cookie",
        "sessionkey",
        "signingkey",
        "clientkey",
        "encryptionkey",
    ];
    WORDS.iter().any(|w| folded.contains(w))
}

/// `value` with every secret-like field, at any depth (inside objects and
/// arrays), replaced by [`PLACEHOLDER`].
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = if is_secret_key(k) && !v.is_null() {
                        Value::String(PLACEHOLDER.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Applies a JSON merge patch (RFC 7396) to `stored`: a missing field keeps
/// its value, `null` deletes, objects merge, anything else replaces — except
/// that [`PLACEHOLDER`] keeps the stored value, at any depth.
pub fn merge_patch(stored: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(changes) => {
            let mut out: Map<String, Value> = match stored {
                Value::Object(map) => map.clone(),
                _ => Map::new(),
            };
            for (key, change) in changes {
                match change {
                    Value::Null => {
                        out.remove(key);
                    }
                    Value::String(s) if s == PLACEHOLDER => {
                        // Keep the stored value (or nothing, if there was none).
                    }
                    _ => {
                        let merged = merge_patch(out.get(key).unwrap_or(&Value::Null), change);
                        out.insert(key.clone(), merged);
                    }
                }
            }
            Value::Object(out)
        }
        Value::String(s) if s == PLACEHOLDER => stored.clone(),
        Value::Array(items) => {
            // Arrays replace, but a placeholder inside keeps the element
            // stored at the same position.
            let old = stored.as_array();
            Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let before = old.and_then(|a| a.get(i)).unwrap_or(&Value::Null);
                        keep_placeholders(before, item)
                    })
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// `new` with every placeholder replaced by what `old` holds at that place.
fn keep_placeholders(old: &Value, new: &Value) -> Value {
    match new {
        Value::String(s) if s == PLACEHOLDER => old.clone(),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let before = old.get(k).unwrap_or(&Value::Null);
                    (k.clone(), keep_placeholders(before, v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| keep_placeholders(old.get(i).unwrap_or(&Value::Null), v))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_are_recognised_in_any_spelling() {
        for key in [
            "token",
            "api_key",
            "apiKey",
            "API-KEY",
            "openai_api_key",
            "password",
            "db_passwd",
            "client_secret",
            "privateKey",
            "private_key",
            "accessKey",
            "AWS_ACCESS_KEY_ID",
            "credentials",
            "refreshToken",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["model", "temperature", "tools", "name", "max_tokens_hint"] {
            assert_eq!(is_secret_key(key), key.contains("token"), "{key}");
        }
    }

    #[test]
    fn redaction_reaches_every_depth() {
        let config = json!({
            "model": "gpt",
            "api_key": "sk-live-1",
            "providers": [{"name": "a", "token": "t-1"}, {"name": "b", "nested": {"password": "p"}}],
            "empty_secret": null
        });
        assert_eq!(
            redact(&config),
            json!({
                "model": "gpt",
                "api_key": PLACEHOLDER,
                "providers": [{"name": "a", "token": PLACEHOLDER}, {"name": "b", "nested": {"password": PLACEHOLDER}}],
                "empty_secret": null
            })
        );
    }

    #[test]
    fn patches_merge_delete_and_keep_placeholders_at_depth() {
        let stored = json!({
            "model": "gpt",
            "api_key": "sk-live-1",
            "tools": {"search": {"token": "t-1", "limit": 5}, "old": true},
            "providers": [{"name": "a", "token": "t-a"}]
        });
        // The client sends back what it was shown, with one change.
        let mut shown = redact(&stored);
        shown["tools"]["search"]["limit"] = json!(10);
        let patched = merge_patch(&stored, &shown);
        assert_eq!(patched["api_key"], "sk-live-1");
        assert_eq!(patched["tools"]["search"]["token"], "t-1");
        assert_eq!(patched["tools"]["search"]["limit"], 10);
        assert_eq!(patched["providers"][0]["token"], "t-a");
        // Missing keeps, null deletes, a new value replaces.
        let patched = merge_patch(
            &stored,
            &json!({"tools": {"old": null}, "api_key": "sk-live-2"}),
        );
        assert_eq!(patched["model"], "gpt");
        assert_eq!(patched["api_key"], "sk-live-2");
        assert!(patched["tools"].get("old").is_none());
        assert_eq!(patched["tools"]["search"]["token"], "t-1");
    }
}
