//! Large files, streamed so that neither side holds the whole file.

use std::io::{Read, Write};

use anyfs::Fs;

use crate::p;

/// Size of the large file: 64 MiB.
pub const LARGE_FILE: usize = 64 << 20;
const CHUNK: usize = 64 << 10;

/// Deterministic, position-dependent bytes, so that a shifted, repeated or
/// dropped chunk is caught.
fn fill(chunk_index: usize, buf: &mut [u8]) {
    let mut x = (chunk_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// A 64 MiB file written through `open_write` and read back through
/// `open_read` in odd-sized pieces comes back byte for byte.
pub fn stream_64_mib_round_trip<B: Fs>(fs: &B) {
    let mut chunk = vec![0u8; CHUNK];
    {
        let mut w = fs.open_write(p("/large.bin")).unwrap();
        for i in 0..LARGE_FILE / CHUNK {
            fill(i, &mut chunk);
            w.write_all(&chunk).unwrap();
        }
        w.commit().unwrap();
    }
    assert_eq!(fs.metadata(p("/large.bin")).unwrap().len, LARGE_FILE as u64);

    let mut r = fs.open_read(p("/large.bin")).unwrap();
    let mut got = vec![0u8; CHUNK];
    for i in 0..LARGE_FILE / CHUNK {
        fill(i, &mut chunk);
        // Read each chunk in two uneven pieces to exercise partial reads.
        let (a, b) = got.split_at_mut(CHUNK / 3);
        r.read_exact(a).unwrap();
        r.read_exact(b).unwrap();
        assert!(got == chunk, "chunk {i} differs");
    }
    let mut tail = [0u8; 1];
    assert_eq!(r.read(&mut tail).unwrap(), 0, "data past the end");

    let window = fs
        .read_range(p("/large.bin"), (LARGE_FILE - CHUNK + 10) as u64, 100)
        .unwrap();
    fill(LARGE_FILE / CHUNK - 1, &mut chunk);
    assert_eq!(window, chunk[10..110]);
    fs.remove_file(p("/large.bin")).unwrap();
}
