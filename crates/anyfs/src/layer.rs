//! [`Layer`]: how middleware wraps a backend.
//!
//! A layer turns a backend into another backend. Both spellings read the
//! same and build the same stack, innermost first:
//!
//! ```
//! use anyfs::{Layer, LayerExt, MemoryBackend};
//! # use anyfs::{FsRead, FsResult};
//! # use std::path::Path;
//! # #[derive(Debug)]
//! # struct Counting;
//! # impl<B> Layer<B> for Counting { type Backend = B; fn layer(self, b: B) -> B { b } }
//! let a = MemoryBackend::new().layer(Counting);
//! let b = Counting.layer(MemoryBackend::new());
//! # let _ = (a, b);
//! ```
//!
//! Order matters: the layer added last sees each call first. Put policy that
//! must see every call (rate limits, audit) outermost, and the layers that
//! change what is stored (encryption) innermost.

use crate::traits::FsRead;

/// Wraps a backend `B` in middleware, producing a new backend.
pub trait Layer<B> {
    /// The wrapped backend.
    type Backend;
    /// Wraps `backend`.
    fn layer(self, backend: B) -> Self::Backend;
}

/// `.layer(...)` on any backend: `backend.layer(l)` is `l.layer(backend)`.
///
/// Backends and middleware of this crate also have `layer` as an inherent
/// method, so that no import is needed.
pub trait LayerExt: Sized {
    /// Wraps `self` in `layer`.
    fn layer<L: Layer<Self>>(self, layer: L) -> L::Backend {
        layer.layer(self)
    }
}

impl<B: FsRead> LayerExt for B {}
