//! From a request path to a file under the root, and never outside it.
//!
//! The path is percent-decoded exactly once, then normalised segment by segment
//! (`.` dropped, `..` pops, and popping past the root is refused), then the result is
//! resolved with `realpath` and must still lie under the (resolved) root, which
//! catches symlinks pointing out.

use std::path::{Path, PathBuf};

use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, CONTROLS};

/// Bytes escaped in a path segment of a `Location` (RFC 3986 `pchar` complement).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Why a path cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Malformed (a NUL byte, a bad escape): 400.
    Bad,
    /// Would leave the root, or is not readable: 403.
    Forbidden,
    /// Nothing there: 404.
    Missing,
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A regular file.
    File(PathBuf),
    /// A directory asked for without its trailing slash: redirect to this path (built
    /// from the normalised segments, re-encoded, so it always starts with one `/` and
    /// can never name another host).
    AddSlash(String),
}

/// Resolves `raw` (the still-encoded path of the request) under `root`, which must
/// already be canonical.
pub fn resolve(root: &Path, raw: &str) -> Result<Target, Refused> {
    let decoded: Vec<u8> = percent_decode_str(raw).collect();
    if decoded.contains(&0) || !decoded.starts_with(b"/") {
        return Err(Refused::Bad);
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop().ok_or(Refused::Forbidden)?;
            }
            s => segments.push(s),
        }
    }
    let mut path = root.to_path_buf();
    segments.iter().for_each(|s| path.push(crate::sys::os_str(s)));
    let real = path.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Refused::Forbidden,
        _ => Refused::Missing,
    })?;
    if !real.starts_with(root) {
        return Err(Refused::Forbidden); // a symlink pointing out of the root
    }
    if real.is_dir() {
        if !decoded.ends_with(b"/") {
            let location: String =
                segments.iter().map(|s| format!("/{}", percent_encode(s, SEGMENT))).collect();
            return Ok(Target::AddSlash(location + "/"));
        }
        // The index may itself be a symlink: resolve and check it like the request.
        let index = real.join("index.html").canonicalize().map_err(|_| Refused::Missing)?;
        if !index.starts_with(root) {
            return Err(Refused::Forbidden);
        }
        return if index.is_file() { Ok(Target::File(index)) } else { Err(Refused::Missing) };
    }
    if decoded.ends_with(b"/") {
        return Err(Refused::Missing); // "file.txt/" names no directory
    }
    Ok(Target::File(real))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_dir::TempDir;

    fn site() -> (TempDir, PathBuf) {
        let dir = TempDir::new("path");
        std::fs::create_dir_all(dir.0.join("www/sub")).expect("mkdir");
        std::fs::write(dir.0.join("www/a.txt"), "a").expect("write");
        std::fs::write(dir.0.join("www/sub/index.html"), "i").expect("write");
        std::fs::write(dir.0.join("secret.txt"), "s").expect("write");
        std::os::unix::fs::symlink(dir.0.join("secret.txt"), dir.0.join("www/link")).expect("symlink");
        let root = dir.0.join("www").canonicalize().expect("root");
        (dir, root)
    }

    #[test]
    fn resolves_inside_and_refuses_everything_else() {
        let (_dir, root) = site();
        let file = |p: &str| Ok(Target::File(root.join(p)));
        assert_eq!(resolve(&root, "/a.txt"), file("a.txt"));
        assert_eq!(resolve(&root, "/sub/./../a.txt"), file("a.txt"));
        assert_eq!(resolve(&root, "/%61.txt"), file("a.txt"));
        assert_eq!(resolve(&root, "/sub/"), file("sub/index.html"));
        assert_eq!(resolve(&root, "/sub"), Ok(Target::AddSlash("/sub/".into())));
        assert_eq!(
            resolve(&root, "//evil.com/..//sub"),
            Ok(Target::AddSlash("/sub/".into())),
            "no open redirect"
        );
        assert_eq!(resolve(&root, "/../secret.txt"), Err(Refused::Forbidden));
        assert_eq!(resolve(&root, "/%2e%2e/secret.txt"), Err(Refused::Forbidden));
        assert_eq!(resolve(&root, "/sub/%2E%2E/%2E%2E/secret.txt"), Err(Refused::Forbidden));
        assert_eq!(resolve(&root, "/..%2fsecret.txt"), Err(Refused::Forbidden));
        assert_eq!(resolve(&root, "/%252e%252e/secret.txt"), Err(Refused::Missing), "decoded once only");
        assert_eq!(resolve(&root, "/link"), Err(Refused::Forbidden), "symlink out of the root");
        assert_eq!(resolve(&root, "/a.txt%00.html"), Err(Refused::Bad));
        assert_eq!(resolve(&root, "/a.txt/"), Err(Refused::Missing));
        assert_eq!(resolve(&root, "/nope"), Err(Refused::Missing));
        assert_eq!(resolve(&root, "/"), Err(Refused::Missing), "no index.html at the root of this site");
    }
}
