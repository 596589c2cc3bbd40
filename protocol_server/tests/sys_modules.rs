//! Linux-only code lives in one `sys` module per crate, and every crate refuses to
//! build elsewhere with a `compile_error!` that says why.
//!
//! Only x86_64 Linux can be targeted on the machines that build this, so no
//! cross-compile can show what another OS would hit; instead these tests read the
//! source of every crate of the workspace. The list of what counts as Linux-only is
//! [`PATTERNS`], kept short on purpose.
//!
//! Allowed outside `sys`: comments, and test-only code (`#[cfg(test)]` items and the
//! files of `#[cfg(test)] mod x;`): unit tests build fixtures such as symlinks with
//! Unix calls, and they only ever run where the crate builds.

use std::fs;
use std::path::{Path, PathBuf};

/// Crates whose Linux-only code must stay in their `sys` module.
const CRATES: &[&str] = &["async_pool", "reactor", "protocol_server", "httpd", "pubsub_protocol"];

/// Crates exempt from the scan, and why. They still need the `compile_error!`.
const EXEMPT: &[(&str, &str)] = &[(
    "bench",
    "measuring Linux processes (/proc, sched_setaffinity, getrusage) is its whole job; not linked into the servers",
)];

/// What marks a line as Linux- (or Unix-) only.
const PATTERNS: &[&str] = &["nix::", "libc::", "std::os::unix", "std::os::fd", "mio::unix", "/proc/"];

/// The guard each crate root or `sys` module must hold: the `cfg`, then the macro.
const GUARD: [&str; 2] = ["#[cfg(not(target_os = \"linux\"))]", "compile_error!("];

/// Crates that must show no `mio` type in a public item.
const NO_MIO: &[&str] = &["async_pool", "reactor", "protocol_server"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate lies in the workspace").to_path_buf()
}

/// What is wrong with one line (outside `sys`, not a comment, not test code).
fn linux_only(line: &str) -> Option<String> {
    // At the start of a path (`unix::` holds `nix::`).
    let at_start = |p: &str| line.match_indices(p).any(|(i, _)| !ident_char(line[..i].chars().next_back()));
    if let Some(p) = PATTERNS.iter().find(|p| at_start(p)) {
        return Some(format!("uses `{p}`"));
    }
    // `raw_os_error() == Some(24)`, `matches!(e.raw_os_error(), Some(23 | 24))`: errno
    // numbers differ between systems; name them (in `sys`).
    let raw_number = line
        .match_indices("Some(")
        .any(|(i, m)| line[i + m.len()..].trim_start().starts_with(|c: char| c.is_ascii_digit()));
    (line.contains("raw_os_error") && raw_number).then(|| "compares a raw errno number".to_string())
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).expect("read a source folder").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The folder where `file`'s `mod x;` declarations are found.
fn module_dir(file: &Path) -> PathBuf {
    let parent = file.parent().expect("a file has a folder");
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("lib" | "main" | "mod") => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
        None => parent.to_path_buf(),
    }
}

/// One source file, with its test-only lines marked and the files of its
/// `#[cfg(test)] mod x;` declarations collected into `test_files`.
fn production_lines(file: &Path, text: &str, test_files: &mut Vec<PathBuf>) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line != "#[cfg(test)]" {
            if !line.starts_with("//") {
                kept.push((i + 1, lines[i].to_string()));
            }
            i += 1;
            continue;
        }
        // The item under the attribute: a file module, or an item whose braces we skip.
        i += 1;
        let item = lines.get(i).map_or("", |l| l.trim());
        if let Some(name) = item.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) {
            let dir = module_dir(file);
            test_files.push(dir.join(format!("{name}.rs")));
            test_files.push(dir.join(name));
            i += 1;
            continue;
        }
        let mut depth = 0i32;
        while i < lines.len() {
            depth += lines[i].matches('{').count() as i32 - lines[i].matches('}').count() as i32;
            i += 1;
            if depth <= 0 && (lines[i - 1].contains('}') || lines[i - 1].trim_end().ends_with(';')) {
                break;
            }
        }
    }
    kept
}

/// Every production line of a crate's `src/`, with its file, skipping test-only files.
fn crate_lines(krate: &str) -> Vec<(PathBuf, usize, String)> {
    let mut files = Vec::new();
    rust_files(&workspace().join(krate).join("src"), &mut files);
    let mut test_files = Vec::new();
    let mut all = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("read a source file");
        all.push((file.clone(), production_lines(file, &text, &mut test_files)));
    }
    all.into_iter()
        .filter(|(file, _)| !test_files.iter().any(|t| file.starts_with(t)))
        .flat_map(|(file, lines)| lines.into_iter().map(move |(n, l)| (file.clone(), n, l)))
        .collect()
}

fn is_sys(krate: &str, file: &Path) -> bool {
    let src = workspace().join(krate).join("src");
    file == src.join("sys.rs") || file.starts_with(src.join("sys"))
}

fn shown(file: &Path) -> String {
    file.strip_prefix(workspace()).unwrap_or(file).display().to_string()
}

#[test]
fn linux_only_apis_are_used_only_in_sys_modules() {
    let mut found = Vec::new();
    for krate in CRATES {
        for (file, n, line) in crate_lines(krate) {
            if is_sys(krate, &file) {
                continue;
            }
            if let Some(why) = linux_only(&line) {
                found.push(format!("{}:{n}: {why} outside `{krate}::sys`: {}", shown(&file), line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "Linux-only code outside the sys modules:\n{}", found.join("\n"));
}

/// The guard in a file: the `cfg` line, then (after blank lines) the macro.
fn has_guard(file: &Path) -> bool {
    let Ok(text) = fs::read_to_string(file) else { return false };
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.windows(2).any(|w| w[0] == GUARD[0] && w[1].starts_with(GUARD[1]))
}

#[test]
fn every_crate_refuses_other_systems_with_a_compile_error() {
    let mut missing = Vec::new();
    for krate in CRATES.iter().chain(EXEMPT.iter().map(|(k, _)| k)) {
        let src = workspace().join(krate).join("src");
        let places = ["sys.rs", "sys/mod.rs", "lib.rs", "main.rs"].map(|f| src.join(f));
        if !places.iter().any(|p| has_guard(p)) {
            missing.push(format!("{krate}: no `{}` + `compile_error!` in src/{{sys,lib,main}}.rs", GUARD[0]));
        }
        let has_sys = places[..2].iter().any(|p| p.exists());
        if CRATES.contains(krate) && !has_sys {
            missing.push(format!("{krate}: no sys module (src/sys.rs)"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn every_workspace_member_is_scanned_or_exempt_with_a_reason() {
    let manifest = fs::read_to_string(workspace().join("Cargo.toml")).expect("read the workspace manifest");
    let members = manifest.lines().find_map(|l| l.trim().strip_prefix("members = ")).expect("a members list");
    for member in members.trim_matches(['[', ']']).split(',').map(|m| m.trim().trim_matches('"')) {
        let known = CRATES.contains(&member) || EXEMPT.iter().any(|(k, why)| *k == member && !why.is_empty());
        assert!(known, "workspace member {member} is neither in CRATES nor in EXEMPT");
    }
}

/// Names a file imports from `mio` (`use mio::net::TcpStream;` gives `TcpStream`).
fn mio_imports(lines: &[&str]) -> Vec<String> {
    let uses = lines.iter().filter_map(|l| l.trim().strip_prefix("use mio::")?.strip_suffix(';'));
    uses.flat_map(|u| {
        let names = u.rsplit_once('{').map_or(u, |(_, inner)| inner.trim_end_matches('}'));
        let last = names.rsplit("::").next().unwrap_or(names).to_string();
        let list = if u.contains('{') { names.to_string() } else { last };
        list.split(',').filter_map(|n| n.split_whitespace().last().map(str::to_string)).collect::<Vec<_>>()
    })
    .filter(|n| n != "self")
    .collect()
}

/// Whether `text` names `name` as a type of its own (not `std::net::name`).
fn names(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !ident_char(before) && !ident_char(after) && !text[..i].ends_with("::")
    })
}

/// A heuristic, as no stable tool lists a crate's public API: the text (up to its `{`
/// or `;`) of every `pub` item (not `pub(crate)`), every `impl` header and every method
/// of a `pub trait` must not name `mio::` nor a name the file imports from `mio`. The
/// compile-time proof for the former offenders is in `reactor/tests/std_stream.rs` and
/// `tests/rw_hooks.rs`.
#[test]
fn no_public_item_names_a_mio_type() {
    let mut found = Vec::new();
    for krate in NO_MIO {
        let mut files = Vec::new();
        rust_files(&workspace().join(krate).join("src"), &mut files);
        for file in files.iter().filter(|f| !is_sys(krate, f)) {
            let text = fs::read_to_string(file).expect("read a source file");
            let kept = production_lines(file, &text, &mut Vec::new());
            let lines: Vec<&str> = kept.iter().map(|(_, l)| l.as_str()).collect();
            let imported = mio_imports(&lines);
            let mut in_pub_trait = false;
            for (k, line) in lines.iter().enumerate() {
                let head = line.trim_start();
                in_pub_trait = (in_pub_trait && *line != "}") || head.starts_with("pub trait");
                let public = head.starts_with("pub ") || head.starts_with("impl");
                if !(public || in_pub_trait && head.starts_with("fn ")) {
                    continue;
                }
                // A field (`pub name: Type,`) ends with its line.
                let field = head.trim_end().ends_with(',');
                let item: String = lines[k..]
                    .iter()
                    .scan(false, |done, l| {
                        (!std::mem::replace(done, field || l.contains(['{', ';']))).then_some(*l)
                    })
                    .collect();
                if item.contains("mio::") || imported.iter().any(|n| names(&item, n)) {
                    found.push(format!("{}:{}: {}", shown(file), kept[k].0, head));
                }
            }
        }
    }
    assert!(found.is_empty(), "public items naming mio types:\n{}", found.join("\n"));
}

#[test]
fn the_scanner_catches_each_pattern_and_spares_named_constants() {
    let caught = [
        "use nix::unistd::fork;",
        "let x = nix::libc::EPROTO;",
        "use std::os::unix::fs::FileExt;",
        "use nix::libc;",
        "use std::os::fd::AsRawFd;",
        "registry.register(&mut mio::unix::SourceFd(&fd), t, i)",
        r#"fs::read_to_string("/proc/self/status")"#,
        "Err(e) if matches!(e.raw_os_error(), Some(23 | 24)) => fail(503),",
        "e.raw_os_error() == Some( 24)",
    ];
    for line in caught {
        assert!(linux_only(line).is_some(), "missed: {line}");
    }
    let spared =
        ["Err(e) if sys::is_out_of_descriptors(&e) => fail(503),", "e.raw_os_error() == Some(EMFILE)"];
    for line in spared.into_iter().chain(["use signal_hook_unix::x;", "let phoenix::y = 1;"]) {
        assert!(linux_only(line).is_none(), "false alarm: {line}");
    }
    let text = "fn a() {}\n#[cfg(test)]\nmod tests {\n    use std::os::unix::fs::symlink;\n}\nfn b() {}\n";
    let mut test_files = Vec::new();
    let kept = production_lines(Path::new("src/x.rs"), text, &mut test_files);
    assert_eq!(kept.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 6], "the test module is skipped");
    production_lines(Path::new("src/x.rs"), "#[cfg(test)]\nmod tests;\n", &mut test_files);
    assert!(test_files.contains(&PathBuf::from("src/x/tests.rs")), "{test_files:?}");
    let imports = mio_imports(&["use mio::net::TcpStream;", "use mio::{Events, Interest as I};"]);
    assert_eq!(imports, ["TcpStream", "Events", "I"]);
    assert!(names("fn on_open(&mut self, stream: Arc<TcpStream>);", "TcpStream"));
    assert!(!names("pub fn add(&mut self, l: std::net::TcpStream)", "TcpStream"));
}
