//! The streamed writer of a [`Quota`](super::Quota): charged as it writes,
//! settled when it commits.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::{Charge, QuotaLimits, QuotaState};
use crate::error::FsResult;
use crate::traits::{FileWriter, FsDir, FsRead, FsWriter};

/// A streamed replacement, charged chunk by chunk for what it adds beyond
/// the size the file had when it was opened; at the commit it is charged
/// against what the file holds then (it may have been replaced, moved or
/// removed meanwhile), and everything charged is given back if the commit
/// never comes.
pub(super) struct QuotaWriter<B> {
    pub(super) inner: Option<FsWriter>,
    pub(super) backend: Arc<B>,
    pub(super) state: Arc<QuotaState>,
    pub(super) limits: QuotaLimits,
    pub(super) path: PathBuf,
    pub(super) written: u64,
    /// Bytes charged so far: what `written` exceeds `old_len` by.
    pub(super) charged: u64,
    pub(super) old_len: u64,
}

impl<B> QuotaWriter<B> {
    fn charge(&self) -> Charge<'_> {
        Charge {
            usage: self.state.usage.lock(),
            limits: self.limits,
        }
    }
}

impl<B: Send + Sync> Write for QuotaWriter<B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(io::Error::other("the streamed write was committed"));
        };
        let mut charge = Charge {
            usage: self.state.usage.lock(),
            limits: self.limits,
        };
        let len = buf.len() as u64;
        charge.file_size(&self.path, self.written + len)?;
        let grows = |written: u64| written.saturating_sub(self.old_len);
        charge.check(&self.path, grows(self.written + len) - self.charged, 0, 0)?;
        let n = inner.write(buf)?;
        self.written += n as u64;
        let more = grows(self.written) - self.charged;
        charge.apply(more, 0, 0, 0);
        self.charged += more;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().map_or(Ok(()), |inner| inner.flush())
    }
}

impl<B: FsRead + FsDir + Send + Sync> FileWriter for QuotaWriter<B> {
    fn commit(mut self: Box<Self>) -> FsResult<()> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        let mut charge = self.charge();
        // Under the lock every change made through this quota waits: what
        // the file holds now is what the commit replaces.
        let (replaced, new_name) = match self.backend.metadata(&self.path) {
            Ok(meta) if meta.is_file() => (meta.len, false),
            Ok(_) => (0, false),
            Err(e) if e.is_absent() => (0, true),
            Err(e) => return Err(e),
        };
        // From what was charged to what the commit adds: `written` in,
        // `replaced` out.
        let (add, sub) = (self.written, replaced + self.charged);
        charge.check(&self.path, add, sub, u64::from(new_name))?;
        inner.commit()?;
        charge.apply(add, sub, u64::from(new_name), 0);
        drop(charge);
        // Charged for good now: nothing to give back on drop.
        self.charged = 0;
        Ok(())
    }
}

impl<B> Drop for QuotaWriter<B> {
    fn drop(&mut self) {
        // Never committed (or the commit failed): the staged bytes are gone.
        if self.charged > 0 {
            let charged = self.charged;
            self.charge().apply(0, charged, 0, 0);
        }
    }
}
