//! The two backends that hold a whole filesystem in process memory:
//! [`MemoryBackend`] (plain) and [`EncryptedMemoryBackend`] (every node
//! sealed while it is not in use). They share one POSIX tree:
//!
//! - [`node`]: what a node holds, parameterised by what differs between the
//!   two (file bytes wiped or not, how a node's names are recorded);
//! - [`store`]: the node-store interface and the tree's rules over it
//!   (walking, slots, link, unlink, creating, changing content);
//! - [`tree`]: the filesystem traits, written once over a store and its
//!   lock;
//! - [`plain`] and [`encrypted`]: each backend's store, and what only it
//!   offers.

mod encrypted;
mod node;
mod plain;
mod store;
mod tree;

pub use encrypted::EncryptedMemoryBackend;
pub use plain::MemoryBackend;
