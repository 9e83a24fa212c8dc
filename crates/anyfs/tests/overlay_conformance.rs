//! An overlay with an empty base against the whole conformance suite: with
//! nothing below it, it must behave as the workspace it writes to.

use anyfs::overlay::Overlay;
use anyfs::{MemoryBackend, ReadOnly};

type Over = Overlay<ReadOnly<MemoryBackend>, MemoryBackend>;

fn make() -> Over {
    Overlay::open(ReadOnly::new(MemoryBackend::new()), MemoryBackend::new())
        .expect("an overlay opens")
}

anyfs_test::conformance!(Over => make(); links, permissions, sync, stats, inode);
