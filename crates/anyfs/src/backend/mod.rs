//! Backends: where the bytes live.

mod codec;
mod encrypted_memory;
mod host;
mod memory;
mod staged;
mod std_fs;
mod vroot_fs;

pub use encrypted_memory::EncryptedMemoryBackend;
pub use memory::MemoryBackend;
pub(crate) use staged::WholeFileWriter;
pub use std_fs::StdFsBackend;
pub use vroot_fs::VRootFsBackend;
