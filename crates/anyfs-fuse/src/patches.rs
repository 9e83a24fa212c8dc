//! Writes to an open file not yet committed to the backend: extents laid
//! over the content the backend holds, so that a write into a large file
//! holds only the bytes written, never the whole file.

use std::collections::BTreeMap;

/// Buffered writes over a file whose backend content was `base_len` bytes
/// long when the first of them came.
#[derive(Debug, Default)]
pub(crate) struct Patches {
    /// Start → bytes. Extents neither overlap nor touch: a write next to or
    /// over others is merged with them, so their ends are in order too.
    extents: BTreeMap<u64, Vec<u8>>,
    base_len: u64,
    bytes: usize,
}

impl Patches {
    pub(crate) fn new(base_len: u64) -> Self {
        Self {
            base_len,
            ..Self::default()
        }
    }

    /// The length the backend held when buffering began.
    pub(crate) fn base_len(&self) -> u64 {
        self.base_len
    }

    /// The file's length with the buffered writes in.
    pub(crate) fn len(&self) -> u64 {
        let end = self
            .extents
            .last_key_value()
            .map_or(0, |(start, bytes)| start + bytes.len() as u64);
        self.base_len.max(end)
    }

    /// How many bytes are buffered.
    pub(crate) fn pending(&self) -> usize {
        self.bytes
    }

    /// Buffers `data` written at `at`, over whatever was buffered there.
    pub(crate) fn insert(&mut self, at: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = at + data.len() as u64;
        // Every extent that overlaps or touches [at, end], lowest first.
        let mut touching: Vec<u64> = self
            .extents
            .range(..=end)
            .rev()
            .take_while(|(start, bytes)| *start + bytes.len() as u64 >= at)
            .map(|(start, _)| *start)
            .collect();
        touching.reverse();
        let stop = touching
            .last()
            .map_or(end, |s| end.max(s + self.extents[s].len() as u64));
        // Grow the lowest extent in place when the write does not start
        // before it (a file written front to back is one growing buffer).
        let (start, mut merged) = match touching.first() {
            Some(&first) if first <= at => {
                let bytes = self.extents.remove(&first).unwrap_or_default();
                self.bytes -= bytes.len();
                (first, bytes)
            }
            _ => (at, Vec::new()),
        };
        merged.resize((stop - start) as usize, 0);
        for other in touching.into_iter().filter(|&s| s != start) {
            if let Some(bytes) = self.extents.remove(&other) {
                self.bytes -= bytes.len();
                let from = (other - start) as usize;
                merged[from..from + bytes.len()].copy_from_slice(&bytes);
            }
        }
        let from = (at - start) as usize;
        merged[from..from + data.len()].copy_from_slice(data);
        self.bytes += merged.len();
        self.extents.insert(start, merged);
    }

    /// After the backend's file was cut or extended to `size`: what was
    /// buffered past it goes, and the backend now holds `size` bytes.
    pub(crate) fn truncate(&mut self, size: u64) {
        let beyond: Vec<u64> = self.extents.range(size..).map(|(&s, _)| s).collect();
        for start in beyond {
            if let Some(bytes) = self.extents.remove(&start) {
                self.bytes -= bytes.len();
            }
        }
        if let Some((&start, bytes)) = self.extents.range_mut(..size).next_back() {
            let keep = (size - start) as usize;
            if bytes.len() > keep {
                self.bytes -= bytes.len() - keep;
                bytes.truncate(keep);
            }
        }
        self.base_len = size;
    }

    /// Lays the buffered bytes over `buf`, which holds the file from `offset`.
    pub(crate) fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        for (&start, bytes) in self.extents.range(..end).rev() {
            let stop = start + bytes.len() as u64;
            if stop <= offset {
                break;
            }
            let (from, to) = (start.max(offset), stop.min(end));
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
        }
    }

    /// The buffered extents, in order of offset.
    pub(crate) fn extents(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.extents.iter().map(|(&s, b)| (s, b.as_slice()))
    }

    /// How many separate extents are buffered.
    pub(crate) fn count(&self) -> usize {
        self.extents.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Patches;
    use proptest::prelude::*;

    /// What a plain buffer says after the same writes.
    fn model(base: &[u8], writes: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut file = base.to_vec();
        // Writing nothing changes nothing (as `pwrite(2)` of no bytes).
        for (at, data) in writes.iter().filter(|(_, d)| !d.is_empty()) {
            let at = *at as usize;
            if file.len() < at + data.len() {
                file.resize(at + data.len(), 0);
            }
            file[at..at + data.len()].copy_from_slice(data);
        }
        file
    }

    /// The file as read through the patches: base bytes, zeros in a gap,
    /// buffered bytes over both.
    fn read(base: &[u8], p: &Patches, offset: u64, len: usize) -> Vec<u8> {
        let end = (offset + len as u64).min(p.len());
        if offset >= end {
            return Vec::new();
        }
        let mut buf = vec![0; (end - offset) as usize];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = base.get(offset as usize + i).copied().unwrap_or(0);
        }
        p.overlay(offset, &mut buf);
        buf
    }

    #[test]
    fn writes_front_to_back_make_one_extent() {
        let mut p = Patches::new(0);
        for i in 0..100u64 {
            p.insert(i * 10, &[i as u8; 10]);
        }
        assert_eq!(p.extents().count(), 1);
        assert_eq!((p.len(), p.pending()), (1000, 1000));
    }

    #[test]
    fn a_write_bridging_two_extents_merges_them() {
        let mut p = Patches::new(100);
        p.insert(10, b"aaaa");
        p.insert(30, b"bbbb");
        assert_eq!(p.extents().count(), 2);
        p.insert(12, &[b'c'; 20]);
        let extents: Vec<_> = p.extents().collect();
        assert_eq!(extents.len(), 1);
        assert_eq!(extents[0].0, 10);
        let mut want = b"aa".to_vec();
        want.extend([b'c'; 20]);
        want.extend(b"bb");
        assert_eq!(extents[0].1, want.as_slice());
        assert_eq!(p.pending(), 24);
        assert_eq!(p.len(), 100);
    }

    #[test]
    fn a_cut_drops_what_lies_past_it() {
        let mut p = Patches::new(100);
        p.insert(10, b"aaaa");
        p.insert(50, b"bbbbbbbb");
        p.insert(200, b"cc");
        p.truncate(54);
        let extents: Vec<_> = p.extents().collect();
        assert_eq!(extents, vec![(10, &b"aaaa"[..]), (50, &b"bbbb"[..])]);
        assert_eq!((p.len(), p.base_len(), p.pending()), (54, 54, 8));
        p.truncate(0);
        assert_eq!((p.len(), p.pending(), p.extents().count()), (0, 0, 0));
    }

    proptest! {
        #[test]
        fn reads_through_the_patches_match_a_plain_buffer(
            base in proptest::collection::vec(any::<u8>(), 0..300),
            writes in proptest::collection::vec(
                (0u64..400, proptest::collection::vec(any::<u8>(), 0..60)), 0..20),
            probes in proptest::collection::vec((0u64..500, 0usize..200), 1..10),
        ) {
            let mut p = Patches::new(base.len() as u64);
            for (at, data) in &writes {
                p.insert(*at, data);
            }
            let expected = model(&base, &writes);
            prop_assert_eq!(p.len(), expected.len() as u64);
            // Extents are disjoint, apart, in order, and counted right.
            let mut last_end = None;
            let mut total = 0;
            for (start, bytes) in p.extents() {
                prop_assert!(!bytes.is_empty());
                if let Some(end) = last_end {
                    prop_assert!(start > end);
                }
                last_end = Some(start + bytes.len() as u64);
                total += bytes.len();
            }
            prop_assert_eq!(total, p.pending());
            for (offset, len) in probes {
                let want: Vec<u8> = expected
                    .iter()
                    .skip(offset as usize)
                    .take(len)
                    .copied()
                    .collect();
                prop_assert_eq!(read(&base, &p, offset, len), want);
            }
        }
    }
}
