//! Backends: where the bytes live.

mod memory;

pub use memory::MemoryBackend;
