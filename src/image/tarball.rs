//! The build context monoship sends: a tar of exactly the files the content tag covers.
//!
//! [`listing`] decides what goes in (pure): each selected file under the context folder at its
//! context-relative path, regular files as 0644 or 0755, symlinks as symlinks (never
//! followed), and the Dockerfile at its own path, or under [`GENERATED_DOCKERFILE`] when it
//! lies outside the context. [`write`] reads those files and writes a ustar archive, with PAX
//! records for long names, owner 0 and a fixed modification time, so equal inputs give equal
//! bytes.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use crate::image::content::InputFile;

/// The Dockerfile's name in the context when it lies outside the context folder.
pub const GENERATED_DOCKERFILE: &str = ".monoship.Dockerfile";

/// What kind of entry a file becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File {
        executable: bool,
    },
    Symlink,
    /// Bytes made here, not read from the repository.
    Generated,
}

/// One entry of the context tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive (relative to the context).
    pub name: String,
    /// Path in the repository the bytes come from; for [`EntryKind::Generated`], the bytes.
    pub source: String,
    pub kind: EntryKind,
}

/// The context tar's contents and the Dockerfile's name in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// The `dockerfile` build parameter.
    pub dockerfile: String,
}

fn kind(mode: &str) -> Option<EntryKind> {
    match mode {
        "100755" => Some(EntryKind::File { executable: true }),
        "100644" => Some(EntryKind::File { executable: false }),
        "120000" => Some(EntryKind::Symlink),
        _ => None, // submodules (160000) are not files of the context
    }
}

/// `path` relative to the folder `context` (repository paths, `""` is the root).
fn relative<'a>(path: &'a str, context: &str) -> Option<&'a str> {
    if context.is_empty() {
        return Some(path);
    }
    path.strip_prefix(context)?
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
}

/// The entries for a build of `dockerfile` in `context` (repository paths) from the files the
/// content tag covers. Pure.
pub fn listing(files: &[&InputFile], context: &str, dockerfile: &str, legacy: bool) -> Listing {
    let context = context.trim_end_matches('/');
    let mut entries: Vec<Entry> = files
        .iter()
        .filter_map(|f| {
            Some(Entry {
                name: relative(&f.path, context)?.to_string(),
                source: f.path.clone(),
                kind: kind(&f.mode)?,
            })
        })
        .collect();
    let file = |name: &str| Entry {
        name: name.to_string(),
        source: dockerfile.to_string(),
        kind: EntryKind::File { executable: false },
    };
    let inside = relative(dockerfile, context).map(str::to_string);
    let name = match inside {
        Some(name) => {
            if !entries.iter().any(|e| e.name == name) {
                entries.push(file(&name));
            }
            name
        }
        None => {
            entries.retain(|e| !e.name.starts_with(GENERATED_DOCKERFILE));
            entries.push(file(GENERATED_DOCKERFILE));
            // The files were chosen already; the ignore file only keeps the generated
            // Dockerfile out of `COPY . .`. BuildKit reads `<Dockerfile>.dockerignore`, the
            // legacy builder only `.dockerignore`.
            let ignore = match legacy {
                true => ".dockerignore".to_string(),
                false => format!("{GENERATED_DOCKERFILE}.dockerignore"),
            };
            entries.retain(|e| e.name != ignore);
            entries.push(Entry {
                source: format!("{GENERATED_DOCKERFILE}\n{ignore}\n"),
                name: ignore,
                kind: EntryKind::Generated,
            });
            GENERATED_DOCKERFILE.to_string()
        }
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Listing {
        entries,
        dockerfile: name,
    }
}

/// The modification time of every entry (2000-01-01), so an archive depends only on its files.
const MTIME: u64 = 946_684_800;

/// The archive of `listing` in memory, reading files below `root` (see [`write_to`]).
///
/// # Errors
/// As [`write_to`].
#[cfg(test)]
pub fn write(listing: &Listing, root: &Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    write_to(listing, root, &mut out)?;
    Ok(out)
}

/// Writes the archive of `listing` to `out`, reading files below `root` one at a time, so a
/// context of any size takes a buffer's worth of memory.
///
/// # Errors
/// When a file cannot be read, or its size changed while it was copied (it changed after
/// the plan read it), or `out` fails.
pub fn write_to(listing: &Listing, root: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    for entry in &listing.entries {
        let path = root.join(&entry.source);
        match entry.kind {
            EntryKind::File { executable } => {
                let mut file = File::open(&path).map_err(|e| annotate(e, &entry.source))?;
                let size = file
                    .metadata()
                    .map_err(|e| annotate(e, &entry.source))?
                    .len();
                let mode = if executable { 0o755 } else { 0o644 };
                put_header(out, &entry.name, b'0', mode, "", size)?;
                let copied = std::io::copy(&mut (&mut file).take(size), out)
                    .map_err(|e| annotate(e, &entry.source))?;
                if copied != size {
                    let why = format!(
                        "{} changed while the build context was written",
                        entry.source
                    );
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why));
                }
                pad(out, size)?;
            }
            EntryKind::Symlink => {
                let target = std::fs::read_link(&path).map_err(|e| annotate(e, &entry.source))?;
                let target = target.to_string_lossy();
                put_header(out, &entry.name, b'2', 0o777, &target, 0)?;
            }
            EntryKind::Generated => {
                let data = entry.source.as_bytes();
                put_header(out, &entry.name, b'0', 0o644, "", data.len() as u64)?;
                out.write_all(data)?;
                pad(out, data.len() as u64)?;
            }
        }
    }
    out.write_all(&[0u8; 1024]) // two zero blocks end the archive
}

fn annotate(e: std::io::Error, path: &str) -> std::io::Error {
    std::io::Error::new(
        e.kind(),
        format!("cannot read {path} for the build context: {e}"),
    )
}

/// One PAX record: `<length> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

/// The header of one entry of `size` bytes, after a PAX header when the name or the link is
/// longer than its ustar field.
fn put_header(
    out: &mut dyn Write,
    name: &str,
    kind: u8,
    mode: u32,
    link: &str,
    size: u64,
) -> std::io::Result<()> {
    let mut pax = String::new();
    if name.len() > 100 {
        pax.push_str(&pax_record("path", name));
    }
    if link.len() > 100 {
        pax.push_str(&pax_record("linkpath", link));
    }
    if !pax.is_empty() {
        out.write_all(&header("pax", b'x', 0o644, "", pax.len() as u64))?;
        out.write_all(pax.as_bytes())?;
        pad(out, pax.len() as u64)?;
    }
    out.write_all(&header(name, kind, mode, link, size))
}

/// Zeros up to the next 512-byte block after `size` bytes of content.
fn pad(out: &mut dyn Write, size: u64) -> std::io::Result<()> {
    let rest = (size % 512) as usize;
    match rest {
        0 => Ok(()),
        _ => out.write_all(&[0u8; 512][..512 - rest]),
    }
}

/// A ustar header; names and links longer than their fields are cut (a PAX record before it
/// holds the whole value).
fn header(name: &str, kind: u8, mode: u32, link: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, len: usize, bytes: &[u8]| {
        let n = bytes.len().min(len);
        h[at..at + n].copy_from_slice(&bytes[..n]);
    };
    put(&mut h, 0, 100, name.as_bytes());
    put(&mut h, 100, 8, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    put(&mut h, 124, 12, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, 12, format!("{MTIME:011o}\0").as_bytes());
    put(&mut h, 148, 8, b"        ");
    h[156] = kind;
    put(&mut h, 157, 100, link.as_bytes());
    put(&mut h, 257, 8, b"ustar\x0000");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: &str) -> InputFile {
        InputFile {
            path: path.into(),
            mode: mode.into(),
            id: "x".into(),
        }
    }

    fn names(l: &Listing) -> Vec<(&str, &str, EntryKind)> {
        l.entries
            .iter()
            .map(|e| (e.name.as_str(), e.source.as_str(), e.kind))
            .collect()
    }

    const FILE: EntryKind = EntryKind::File { executable: false };

    #[test]
    fn files_go_in_at_context_relative_paths_with_their_kind() {
        let files = [
            file("svc/cart/main.go", "100644"),
            file("svc/cart/run.sh", "100755"),
            file("svc/cart/link", "120000"),
            file("svc/cart/vendor/lib", "160000"),
            file("svc/cart/Dockerfile", "100644"),
            file("svc/cartography/x", "100644"),
        ];
        let refs: Vec<&InputFile> = files.iter().collect();
        let l = listing(&refs, "svc/cart", "svc/cart/Dockerfile", false);
        assert_eq!(l.dockerfile, "Dockerfile");
        assert_eq!(
            names(&l),
            [
                ("Dockerfile", "svc/cart/Dockerfile", FILE),
                ("link", "svc/cart/link", EntryKind::Symlink),
                ("main.go", "svc/cart/main.go", FILE),
                (
                    "run.sh",
                    "svc/cart/run.sh",
                    EntryKind::File { executable: true }
                ),
            ]
        );
        let root = listing(&refs[..1], "", "Dockerfile", false);
        assert_eq!(
            names(&root),
            [
                ("Dockerfile", "Dockerfile", FILE),
                ("svc/cart/main.go", "svc/cart/main.go", FILE)
            ],
            "the Dockerfile goes in even when no file selected it"
        );
    }

    #[test]
    fn a_dockerfile_outside_the_context_gets_a_generated_name_kept_out_of_copies() {
        let files = [
            file("docker/cart.Dockerfile", "100644"),
            file("app/a", "100644"),
        ];
        let refs: Vec<&InputFile> = files.iter().collect();
        let l = listing(&refs, "app", "docker/cart.Dockerfile", false);
        assert_eq!(l.dockerfile, GENERATED_DOCKERFILE);
        let ignore = format!("{GENERATED_DOCKERFILE}.dockerignore");
        let body = format!("{GENERATED_DOCKERFILE}\n{ignore}\n");
        assert_eq!(
            names(&l),
            [
                (GENERATED_DOCKERFILE, "docker/cart.Dockerfile", FILE),
                (ignore.as_str(), body.as_str(), EntryKind::Generated),
                ("a", "app/a", FILE),
            ]
        );
        let legacy = listing(&refs, "app", "docker/cart.Dockerfile", true);
        assert!(legacy.entries.iter().any(|e| e.name == ".dockerignore"));
    }

    #[test]
    fn the_archive_is_ustar_with_pax_names_and_symlinks_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{}/f", "d".repeat(120));
        std::fs::create_dir_all(dir.path().join(&long).parent().unwrap()).unwrap();
        std::fs::write(dir.path().join(&long), "long").unwrap();
        std::fs::write(dir.path().join("a"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("l")).unwrap();
        let listing = Listing {
            entries: vec![
                Entry {
                    name: "a".into(),
                    source: "a".into(),
                    kind: EntryKind::File { executable: true },
                },
                Entry {
                    name: "l".into(),
                    source: "l".into(),
                    kind: EntryKind::Symlink,
                },
                Entry {
                    name: long.clone(),
                    source: long.clone(),
                    kind: FILE,
                },
            ],
            dockerfile: "Dockerfile".into(),
        };
        let tar = write(&listing, dir.path()).unwrap();
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[257..263], b"ustar\0");
        assert_eq!(&tar[100..107], b"0000755");
        assert_eq!(&tar[512..517], b"hello");
        let link = &tar[1024..1536];
        assert_eq!((link[156], &link[157..168]), (b'2', &b"/etc/passwd"[..]));
        assert_eq!(tar[1536 + 156], b'x', "a PAX header carries the long name");
        let record = String::from_utf8_lossy(&tar[2048..2048 + 140]);
        assert!(record.starts_with(&pax_record("path", &long)), "{record}");
        assert_eq!(tar, write(&listing, dir.path()).unwrap(), "reproducible");
        let missing = Listing {
            entries: vec![Entry {
                name: "m".into(),
                source: "m".into(),
                kind: FILE,
            }],
            ..listing
        };
        assert!(write(&missing, dir.path())
            .unwrap_err()
            .to_string()
            .contains("cannot read m"));
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("path", "ab"), "11 path=ab\n");
        let r = pax_record("path", &"x".repeat(95));
        assert_eq!(r.len().to_string(), r.split(' ').next().unwrap());
    }
}
