//! Backends: where the bytes live.

mod host;
mod memory;
mod std_fs;
mod vroot_fs;

pub use memory::MemoryBackend;
pub use std_fs::StdFsBackend;
pub use vroot_fs::VRootFsBackend;
