//! Agent configs as the API shows and changes them: secret-like fields
//! redacted at any depth, and JSON merge patches where the placeholder keeps
//! what is stored.

use serde_json::{Map, Value};

/// What a redacted value reads as; sent back in a patch, it keeps the stored
/// value.
pub const PLACEHOLDER: &str = "********";

/// The words of a name: split at anything but letters and digits and where
/// a lower-case letter meets an upper-case one (`sshKey`), lower-cased.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Whether a key names something secret: one of its words is a secret word
/// (`key`, `auth`, `pwd`, `pin`, `dsn`, …), or its letters (case, `_` and
/// `-` ignored) contain a longer one (`apikey`, `password`, …).
pub fn is_secret_key(key: &str) -> bool {
    /// Short words, secret only as a whole word (`pin`, not `spinner`).
    const SHORT: &[&str] = &[
        "key", "keys", "auth", "pass", "pwd", "pw", "bearer", "jwt", "sk", "pin", "pem", "dsn",
        "otp", "mfa", "totp", "ssh", "pgp", "gpg", "cert", "salt",
    ];
    if words(key).iter().any(|w| SHORT.contains(&w.as_str())) {
        return true;
    }
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
        "sshkey",
        "connectionstring",
        "databaseurl",
    ];
    WORDS.iter().any(|w| folded.contains(w))
}

/// Prefixes that mark a value as a credential whatever its field is called:
/// (prefix, how many more characters at least, none of them white space —
/// so that prose starting with the same letters is left alone).
const SECRET_PREFIXES: &[(&str, usize)] = &[
    ("sk-", 16),
    ("sk_live_", 8),
    ("sk_test_", 8),
    ("rk_live_", 8),
    ("ghp_", 20),
    ("gho_", 20),
    ("ghu_", 20),
    ("ghs_", 20),
    ("ghr_", 20),
    ("github_pat_", 20),
    ("glpat-", 16),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xoxa-", 10),
    ("xoxs-", 10),
    ("AKIA", 16),
    ("ASIA", 16),
    ("AIza", 30),
    ("hf_", 20),
    ("afs_acct_", 20),
    ("afs_agent_", 20),
    ("afs_admin_", 20),
    ("Bearer ", 16),
];

/// Whether a string value looks like a secret by its shape: a URL with a
/// password in it (`postgres://user:pw@host/db`), `NAME=value` where NAME
/// is secret-like (`OPENAI_API_KEY=…`), a key with a well-known prefix
/// (`sk-`, `ghp_`, `xoxb-`, `AKIA`, …), a PEM block, or a JSON Web Token.
pub fn is_secret_value(value: &str) -> bool {
    let value = value.trim();
    if value.contains("-----BEGIN ") {
        return true;
    }
    if SECRET_PREFIXES.iter().any(|(prefix, more)| {
        value
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.len() >= *more && !rest.contains(char::is_whitespace))
    }) {
        return true;
    }
    if let Some((_, rest)) = value.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && userinfo.contains(':')
        {
            return true;
        }
    }
    if let Some((name, secret)) = value.split_once('=')
        && !secret.is_empty()
        && !name.is_empty()
        && !name.contains(char::is_whitespace)
        && is_secret_key(name)
    {
        return true;
    }
    // header.payload.signature, each base64url, the header a JSON object.
    let parts: Vec<&str> = value.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.len() >= 4
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// `value` with every secret-like field and every secret-looking string, at
/// any depth (inside objects and arrays), replaced whole by [`PLACEHOLDER`]
/// (whole, so that sending it back in a patch keeps the stored value).
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
        Value::String(s) if is_secret_value(s) => Value::String(PLACEHOLDER.into()),
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
    fn secrets_are_recognised_by_name_and_by_shape() {
        // (field, value, redacted?)
        let table: &[(&str, &str, bool)] = &[
            ("key", "abc", true),
            ("auth", "abc", true),
            ("pass", "abc", true),
            ("pwd", "abc", true),
            ("bearer", "abc", true),
            ("jwt", "abc", true),
            ("sk", "abc", true),
            ("pin", "1234", true),
            ("pem", "abc", true),
            ("ssh_key", "abc", true),
            ("sshKey", "abc", true),
            ("dsn", "abc", true),
            ("DATABASE_URL", "abc", true),
            ("licenseKey", "abc", true),
            ("db", "postgres://app:hunter2@db.internal:5432/prod", true),
            ("upstream", "https://user:pw@example.com/path", true),
            ("env", "OPENAI_API_KEY=sk-live-abcdef", true),
            ("env", "DB_PASSWORD=x", true),
            ("note", "sk-abcdefghijklmnopqrstuvwx", true),
            ("note", "ghp_abcdefghijklmnopqrstuvwxyz0123", true),
            ("note", "xoxb-1234567890-abcdef", true),
            ("note", "AKIAIOSFODNN7EXAMPLE", true),
            (
                "cert",
                "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
                true,
            ),
            (
                "note",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijklmnop",
                true,
            ),
            // Not secrets.
            ("model", "gpt-4o", false),
            ("spinner", "dots", false),
            ("keyboard", "us", false),
            ("author", "ada", false),
            ("homepage", "https://example.com/a:b@c", false),
            ("url", "https://example.com/docs", false),
            ("env", "DEBUG=1", false),
            ("note", "sk-short", false),
            ("note", "AKIA is how those keys start, see the docs", false),
            ("header", "Bearer abcdefghijklmnopqrstuvwxyz", true),
            ("note", "a sentence = with spaces", false),
            ("temperature", "0.7", false),
        ];
        for (field, value, secret) in table {
            let shown = redact(&json!({ *field: value, "in_array": [value] }));
            let redacted = shown[*field] == PLACEHOLDER;
            assert_eq!(redacted, *secret, "{field}: {value}");
            // In an array, by shape alone (an array element has no name).
            if !is_secret_key(field) {
                assert_eq!(shown["in_array"][0] == PLACEHOLDER, *secret, "[{value}]");
            }
        }
    }

    #[test]
    fn values_redacted_by_shape_are_kept_by_the_placeholder() {
        let stored = json!({
            "model": "gpt",
            "db": "postgres://app:hunter2@db/prod",
            "env": ["OPENAI_API_KEY=sk-live-abcdef", "DEBUG=1"]
        });
        let mut shown = redact(&stored);
        assert_eq!(shown["env"], json!([PLACEHOLDER, "DEBUG=1"]));
        shown["model"] = json!("gpt-5");
        let patched = merge_patch(&stored, &shown);
        assert_eq!(patched["db"], stored["db"]);
        assert_eq!(patched["env"], stored["env"]);
        assert_eq!(patched["model"], "gpt-5");
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
