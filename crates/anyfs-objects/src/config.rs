//! Where the objects live: [`ObjectStoreConfig`], from an `s3://BUCKET/PREFIX`
//! URL and the standard AWS variables.

use std::fmt;

use anyfs::{FsError, FsResult};
use zeroize::Zeroizing;

/// The bucket, the prefix inside it, the endpoint and the credentials of an
/// S3-compatible object store.
///
/// `Debug` never shows the secret key.
///
/// ```
/// use anyfs_objects::ObjectStoreConfig;
///
/// let config = ObjectStoreConfig::parse("s3://workspaces/eu-1")?
///     .with_endpoint("http://127.0.0.1:8333")
///     .with_credentials("anyfs", "not-a-real-secret");
/// assert_eq!(config.bucket(), "workspaces");
/// assert_eq!(config.prefix(), "eu-1");
/// assert!(!format!("{config:?}").contains("not-a-real-secret"));
/// # Ok::<(), anyfs::FsError>(())
/// ```
#[derive(Clone)]
pub struct ObjectStoreConfig {
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<Zeroizing<String>>,
}

impl ObjectStoreConfig {
    /// The bucket and prefix of `s3://BUCKET/PREFIX` (the prefix may be
    /// empty); no endpoint and no credentials yet.
    pub fn parse(url: &str) -> FsResult<Self> {
        let invalid = |why: &str| {
            FsError::backend(
                "/",
                "configure the object store",
                format!("`{url}` is not an object store URL: {why} (expected s3://BUCKET/PREFIX)"),
            )
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(invalid(
                "the bucket must be 3 to 63 lowercase letters, digits, dots or dashes",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|part| part == "." || part == ".." || (part.is_empty() && !prefix.is_empty()))
            || prefix.chars().any(char::is_control)
        {
            return Err(invalid("the prefix has an empty, `.` or `..` part"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
        })
    }

    /// [`parse`](Self::parse), with the endpoint, region and credentials
    /// from the standard variables: `AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub fn from_env(url: &str) -> FsResult<Self> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let mut config = Self::parse(url)?;
        config.endpoint = var("AWS_ENDPOINT_URL");
        config.region = var("AWS_REGION");
        config.access_key_id = var("AWS_ACCESS_KEY_ID");
        config.secret_access_key = var("AWS_SECRET_ACCESS_KEY").map(Zeroizing::new);
        Ok(config)
    }

    /// Another endpoint (`http://host:port`), overriding the environment's.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Another region to sign requests for.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Other credentials.
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(Zeroizing::new(secret_access_key.into()));
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix every object name starts with (without slashes around it;
    /// empty for the bucket's root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The endpoint as it may be shown: without any user or password in it.
    pub fn endpoint_for_display(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => redact_userinfo(endpoint),
            None => "https://s3.amazonaws.com".to_owned(),
        }
    }

    pub(crate) fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    pub(crate) fn region(&self) -> &str {
        self.region.as_deref().unwrap_or("us-east-1")
    }

    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        Some((
            self.access_key_id.as_deref()?,
            self.secret_access_key.as_deref()?.as_str(),
        ))
    }
}

impl fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint_for_display())
            .field("region", &self.region())
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "********"),
            )
            .finish()
    }
}

/// `scheme://user:password@host/...` without `user:password@`.
fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_bucket_and_prefix() {
        let c = ObjectStoreConfig::parse("s3://bucket-1/a/b/").unwrap();
        assert_eq!((c.bucket(), c.prefix()), ("bucket-1", "a/b"));
        let c = ObjectStoreConfig::parse("s3://bucket-1").unwrap();
        assert_eq!(c.prefix(), "");
        for bad in [
            "http://b/p",
            "s3://B/p",
            "s3://ab/p",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
        ] {
            assert!(ObjectStoreConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_are_shown_without_credentials() {
        let c = ObjectStoreConfig::parse("s3://bucket/p")
            .unwrap()
            .with_endpoint("http://user:hunter2@127.0.0.1:9000/x");
        assert_eq!(c.endpoint_for_display(), "http://127.0.0.1:9000/x");
    }
}
