//! [`RateLimit`]: a token bucket over every operation.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota as Bucket, RateLimiter};

use crate::error::{FsError, FsResult};
use crate::middleware::{Guarded, Policy, Request};

/// Allows at most a set number of operations per time window and refuses
/// the rest with [`FsErrorKind::RateLimitExceeded`](crate::FsErrorKind::RateLimitExceeded), which says how long to
/// wait. The budget refills continuously (a token bucket): `max_ops(1000)
/// .per_second()` allows a burst of 1000, then one more every millisecond.
///
/// ```
/// use anyfs::prelude::*;
/// use anyfs::{FileStorage, FsErrorKind, MemoryBackend, RateLimitLayer};
///
/// let fs = FileStorage::new(
///     RateLimitLayer::builder().max_ops(3).per_minute().build().layer(MemoryBackend::new()),
/// );
/// fs.write("/a", "1")?;
/// fs.write("/b", "2")?;
/// fs.write("/c", "3")?;
/// match fs.write("/d", "4") {
///     Err(e) if e.kind() == FsErrorKind::RateLimitExceeded => {
///         assert!(e.retry_after().unwrap().as_secs() <= 20)
///     }
///     other => panic!("expected a rate limit, got {other:?}"),
/// }
/// # Ok::<(), anyfs::FsError>(())
/// ```
///
/// Every call of every trait method counts once (refused ones too); path
/// resolution through [`FileStorage`](crate::FileStorage) and closing a
/// handle do not. Clones of the layer share one bucket.
///
/// Order: outside the layers whose work it should bound, inside
/// [`TracingLayer`](crate::TracingLayer) so that refusals are audited.
pub type RateLimit<B> = Guarded<B, RateLimitLayer>;

/// The layer (and policy) of [`RateLimit`].
#[derive(Clone)]
pub struct RateLimitLayer {
    /// `None` when the budget is zero: every operation is refused.
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    max_ops: u32,
    window: Duration,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("max_ops", &self.max_ops)
            .field("window", &self.window)
            .finish()
    }
}

/// Builds a [`RateLimitLayer`]: `max_ops(n)` then a window.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitBuilder {
    max_ops: u32,
    window: Duration,
    burst: Option<u32>,
}

impl RateLimitLayer {
    /// A builder; the default is 1000 operations per second.
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder {
            max_ops: 1000,
            window: Duration::from_secs(1),
            burst: None,
        }
    }
}

impl RateLimitBuilder {
    /// How many operations each window allows (0 refuses everything).
    pub fn max_ops(mut self, n: u32) -> Self {
        self.max_ops = n;
        self
    }
    /// The window is one second.
    pub fn per_second(self) -> Self {
        self.per(Duration::from_secs(1))
    }
    /// The window is one minute.
    pub fn per_minute(self) -> Self {
        self.per(Duration::from_secs(60))
    }
    /// The window is `window`.
    pub fn per(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
    /// How many operations may come at once after a quiet spell (default:
    /// `max_ops`).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }
    /// The layer.
    pub fn build(self) -> RateLimitLayer {
        let burst = self.burst.unwrap_or(self.max_ops);
        let limiter = NonZeroU32::new(self.max_ops)
            .zip(NonZeroU32::new(burst))
            .map(|(ops, burst)| {
                let period = (self.window / ops.get()).max(Duration::from_nanos(1));
                let bucket = Bucket::with_period(period)
                    .expect("the period is at least one nanosecond")
                    .allow_burst(burst);
                Arc::new(RateLimiter::direct(bucket))
            });
        RateLimitLayer {
            limiter,
            max_ops: self.max_ops,
            window: self.window,
        }
    }
}

impl Policy for RateLimitLayer {
    fn check(&self, request: &Request<'_>) -> FsResult<()> {
        let Some(limiter) = &self.limiter else {
            return Err(FsError::rate_limit_exceeded(
                request.error_path(),
                Duration::MAX,
            ));
        };
        limiter.check().map_err(|not_until| {
            FsError::rate_limit_exceeded(
                request.error_path(),
                not_until.wait_time_from(DefaultClock::default().now()),
            )
        })
    }
}
