//! The open-file cache: what a request path resolved to, kept open for a short while.
//!
//! Resolving a path safely costs about eight system calls (the `readlink`s of
//! `realpath`, `stat`, `open`, `fstat`) before a byte is sent; nginx's
//! `open_file_cache` saves them the same way. An entry holds the file's length, its
//! modification time and either its bytes (small files: a hit is answered with one
//! write, and no descriptor stays open) or the open file. Entries are trusted for
//! [`FileCache::valid`], then resolved again: a file changed, replaced or removed on
//! disk is seen within that time. Only files that were found are cached (errors are
//! resolved every time).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most entries held (nginx's `open_file_cache max=1000`): at most this many
/// descriptors stay open (they count against the open-file limit, as nginx's do) or
/// [`MAX_INLINE`] bytes each stay in memory.
pub const MAX_ENTRIES: usize = 1000;

/// Files up to this size are kept in memory and sent with the head in one write.
pub const MAX_INLINE: u64 = 16 * 1024;

/// A regular file, opened, with what its responses need: its bytes if it is small,
/// else the open file.
#[derive(Debug)]
pub struct OpenFile {
    /// The resolved path (its extension gives the `Content-Type`).
    pub path: PathBuf,
    /// The bytes, or the open file they are sent from.
    pub content: Content,
    /// Its length when opened.
    pub len: u64,
    /// Its modification time when opened.
    pub modified: SystemTime,
    /// `ETag`, `Last-Modified` and `Content-Type` values, made once per open.
    pub etag: String,
    /// See `etag`.
    pub last_modified: String,
    /// See `etag`.
    pub content_type: String,
    /// The header fields of a 200 for the whole file, rendered once (`file::send`).
    pub(crate) whole: OnceLock<Box<[u8]>>,
    opened: Instant,
}

impl OpenFile {
    /// Opens `path`; `Ok(None)` if it is not a regular file.
    ///
    /// `O_NONBLOCK`: opening a FIFO without a writer would block the worker for ever;
    /// it opens at once and `fstat` then refuses it (a regular file ignores the flag).
    /// `O_NOFOLLOW`: `path` was resolved with its symlinks, so a symlink found now
    /// was swapped in after the check and is refused (for the last component; the
    /// folders above are not re-checked).
    pub fn open(path: PathBuf) -> io::Result<Option<OpenFile>> {
        let file = crate::sys::open_no_follow(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        let len = meta.len();
        // A file that changes while we read it is sent from the descriptor instead.
        let bytes = (len <= MAX_INLINE).then(|| read_all(&file, len)).flatten();
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        // A file held in memory keeps no descriptor open.
        let content = bytes.map_or_else(|| Content::File(Arc::new(file)), Content::Bytes);
        Ok(Some(OpenFile {
            etag: crate::file::etag(len, modified),
            last_modified: httpdate::fmt_http_date(modified),
            content_type: mime_guess::from_path(&path).first_or_octet_stream().essence_str().to_string(),
            path,
            content,
            len,
            modified,
            whole: OnceLock::new(),
            opened: Instant::now(),
        }))
    }
}

/// Where a cached file's bytes come from.
#[derive(Debug)]
pub enum Content {
    /// The whole file, for files up to [`MAX_INLINE`]: sent with the head in one write.
    Bytes(Arc<[u8]>),
    /// The open file, shared by every response sending it with `sendfile(2)`.
    File(Arc<File>),
}

fn read_all(file: &File, len: u64) -> Option<Arc<[u8]>> {
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    crate::sys::read_exact_at(file, &mut buf, 0).ok()?;
    Some(buf.into())
}

/// Request path → open file, shared by the worker threads of a site.
#[derive(Debug)]
pub struct FileCache {
    valid: Duration,
    entries: Mutex<HashMap<Box<str>, Arc<OpenFile>>>,
}

impl FileCache {
    /// A cache trusting entries for `valid`; zero turns it off.
    pub fn new(valid: Duration) -> FileCache {
        FileCache { valid, entries: Mutex::default() }
    }

    /// How long an entry is trusted before its path is resolved again.
    pub fn valid(&self) -> Duration {
        self.valid
    }

    /// The file `raw_path` (the request path as sent) resolved to, if still trusted.
    pub fn get(&self, raw_path: &str) -> Option<Arc<OpenFile>> {
        if self.valid.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(raw_path).filter(|f| f.opened.elapsed() < self.valid).cloned()
    }

    /// Remembers what `raw_path` resolved to. When full, expired entries go first,
    /// then everything: the bound matters more than the hit rate.
    pub fn insert(&self, raw_path: &str, file: Arc<OpenFile>) {
        if self.valid.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(raw_path) {
            entries.retain(|_, f| f.opened.elapsed() < self.valid);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(raw_path.into(), file);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_dir::TempDir;

    fn temp_file(bytes: &[u8]) -> (TempDir, PathBuf) {
        let dir = TempDir::new("cache");
        let path = dir.0.join("f.txt");
        std::fs::write(&path, bytes).expect("write a temp file");
        (dir, path)
    }

    #[test]
    fn small_files_are_held_in_memory_and_large_ones_are_not() {
        let (_d, small) = temp_file(b"Hello, World!");
        let f = OpenFile::open(small).expect("open").expect("a regular file");
        assert!(matches!(&f.content, Content::Bytes(b) if &b[..] == b"Hello, World!"));
        let (_d, large) = temp_file(&vec![b'x'; MAX_INLINE as usize + 1]);
        let f = OpenFile::open(large).expect("open").expect("a regular file");
        assert!(matches!(f.content, Content::File(_)));
        assert_eq!(f.len, MAX_INLINE + 1);
    }

    #[test]
    fn entries_expire_and_zero_disables() {
        let (_d, path) = temp_file(b"x");
        let file = Arc::new(OpenFile::open(path).expect("open").expect("a regular file"));
        let cache = FileCache::new(Duration::from_secs(3600));
        cache.insert("/f.txt", Arc::clone(&file));
        assert!(cache.get("/f.txt").is_some());
        assert!(cache.get("/other").is_none());
        let expired = FileCache::new(Duration::from_nanos(1));
        expired.insert("/f.txt", Arc::clone(&file));
        assert!(expired.get("/f.txt").is_none(), "older than `valid`");
        let off = FileCache::new(Duration::ZERO);
        off.insert("/f.txt", file);
        assert!(off.is_empty());
    }

    #[test]
    fn the_number_of_entries_is_bounded() {
        let (_d, path) = temp_file(b"x");
        let file = Arc::new(OpenFile::open(path).expect("open").expect("a regular file"));
        let cache = FileCache::new(Duration::from_secs(3600));
        for i in 0..MAX_ENTRIES * 3 {
            cache.insert(&format!("/{i}"), Arc::clone(&file));
            assert!(cache.len() <= MAX_ENTRIES);
        }
    }
}
