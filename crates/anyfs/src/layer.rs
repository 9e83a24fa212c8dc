//! [`Layer`]: how middleware wraps a backend.
//!
//! A layer makes a backend out of another one: `layer.layer(inner)`, as in
//! tower. Every backend can also be asked to put itself under a layer,
//! `backend.layer(layer)` ([`LayerExt`]), which reads innermost first when
//! a stack is built; both spellings build the same stack:
//!
//! ```
//! use anyfs::prelude::*;
//! use anyfs::{MemoryBackend, ReadOnlyLayer};
//!
//! let a = MemoryBackend::new().layer(ReadOnlyLayer::new());
//! let b = ReadOnlyLayer::new().layer(MemoryBackend::new());
//! # let _ = (a, b);
//! ```
//!
//! A layer is a recipe: it is not used up by wrapping, so one layer can
//! wrap several backends (a policy layer's state, such as a rate limiter's
//! budget or an audit sink, is then shared by all of them).
//!
//! Order matters: the layer added last sees each call first. Put policy that
//! must see every call (rate limits, audit) outermost, and the layers that
//! change what is stored (encryption) innermost.
//!
//! To write a middleware, implement [`Middleware`](crate::middleware::Middleware)
//! for the wrapping type (it forwards every method you do not override) and
//! [`Layer`] for the recipe that builds it.

use crate::traits::FsRead;

/// Makes a backend out of a backend `B`: the recipe of a middleware.
pub trait Layer<B> {
    /// The wrapping backend.
    type Backend;
    /// Wraps `inner`.
    fn layer(&self, inner: B) -> Self::Backend;
}

/// `backend.layer(l)` for every backend: the same as `l.layer(backend)`.
pub trait LayerExt: Sized {
    /// Puts `self` under `layer`.
    fn layer<L: Layer<Self>>(self, layer: L) -> L::Backend {
        layer.layer(self)
    }
}

impl<B: FsRead> LayerExt for B {}
