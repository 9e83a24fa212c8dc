//! Backends: where the bytes live.

mod codec;
mod host;
mod memory;
mod staged;
mod std_fs;
mod vroot_fs;

pub use memory::{EncryptedMemoryBackend, MemoryBackend};
pub(crate) use staged::WholeFileWriter;
pub use std_fs::StdFsBackend;
pub use vroot_fs::VRootFsBackend;
