//! Skill bundles: a `.tar.gz` or `.zip` unpacked under `/skills/<name>/`.
//!
//! The whole archive is read and checked before anything is written: an
//! entry that would land outside the bundle's folder (an absolute name, a
//! `..`, a backslash), a symlink or hard link, a device or FIFO, too many
//! entries or too many bytes — and the bundle is refused, nothing written.

use std::io::Read;

/// The most a bundle may unpack to.
pub(crate) const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The most entries a bundle may hold.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// One entry, checked: a relative path of plain names.
#[derive(Debug)]
pub(crate) enum Entry {
    Dir(String),
    File(String, Vec<u8>),
}

/// Why a bundle was refused.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(why.into()))
}

/// A bundle name: one plain name.
pub(crate) fn check_name(name: &str) -> Result<(), Refused> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        refuse("a bundle name is 1-100 letters, digits, `-`, `_` or `.`")
    }
}

/// The entry's path inside the bundle folder, or why it would leave it.
fn clean(name: &str) -> Result<Option<String>, Refused> {
    if name.contains('\0') || name.contains('\\') {
        return refuse(format!("entry {name:?}: NUL or backslash in the name"));
    }
    if name.starts_with('/') {
        return refuse(format!("entry {name:?}: absolute path"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return refuse(format!("entry {name:?}: `..` leaves the bundle")),
            p => parts.push(p),
        }
    }
    if parts.iter().any(|p| p.len() > 255) {
        return refuse(format!("entry {name:?}: a name is longer than 255 bytes"));
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Reads a `.tar.gz` (gzip magic) or `.zip` (`PK` magic) bundle.
pub(crate) fn read(bytes: &[u8]) -> Result<Vec<Entry>, Refused> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_tar_gz(bytes)
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        read_zip(bytes)
    } else {
        refuse("a bundle is a .tar.gz or a .zip")
    }
}

fn read_tar_gz(bytes: &[u8]) -> Result<Vec<Entry>, Refused> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut out = Vec::new();
    let mut total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| Refused(format!("not a readable tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Refused(format!("not a readable tar: {e}")))?;
        if out.len() >= MAX_ENTRIES {
            return refuse(format!("more than {MAX_ENTRIES} entries"));
        }
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| Refused("an entry name is not UTF-8".into()))?;
        let kind = entry.header().entry_type();
        let Some(path) = clean(&name)? else { continue };
        if kind.is_dir() {
            out.push(Entry::Dir(path));
        } else if kind.is_file() {
            total += entry.size();
            if total > MAX_BYTES {
                return refuse(format!("more than {MAX_BYTES} bytes unpacked"));
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| Refused(format!("entry {name:?}: {e}")))?;
            out.push(Entry::File(path, data));
        } else if kind.is_symlink() || kind.is_hard_link() {
            return refuse(format!("entry {name:?}: links are not allowed in bundles"));
        } else if kind == tar::EntryType::XGlobalHeader || kind == tar::EntryType::XHeader {
            continue;
        } else {
            return refuse(format!(
                "entry {name:?}: only files and folders are allowed"
            ));
        }
    }
    Ok(out)
}

fn read_zip(bytes: &[u8]) -> Result<Vec<Entry>, Refused> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Refused(format!("not a readable zip: {e}")))?;
    if archive.len() > MAX_ENTRIES {
        return refuse(format!("more than {MAX_ENTRIES} entries"));
    }
    let mut out = Vec::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| Refused(format!("not a readable zip: {e}")))?;
        let name = file
            .name()
            .map_err(|e| Refused(format!("an entry name is not readable: {e}")))?
            .into_owned();
        if file.is_symlink() {
            return refuse(format!("entry {name:?}: links are not allowed in bundles"));
        }
        let Some(path) = clean(&name)? else { continue };
        if file.is_dir() {
            out.push(Entry::Dir(path));
            continue;
        }
        total += file.size();
        if total > MAX_BYTES {
            return refuse(format!("more than {MAX_BYTES} bytes unpacked"));
        }
        let mut data = Vec::new();
        (&mut file)
            .take(MAX_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| Refused(format!("entry {name:?}: {e}")))?;
        if data.len() as u64 > file.size() {
            return refuse(format!("entry {name:?}: larger than it says"));
        }
        out.push(Entry::File(path, data));
    }
    Ok(out)
}
