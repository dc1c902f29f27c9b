//! The cache directory layout: where each asset lives once fetched, and the Brown
//! calibration / held-out split rule of data.md.
//!
//! Pure path logic plus one file read (`brown_split`). Never reads environment variables: the CLI
//! passes `$VPTQ_CACHE` and the home directory in.
//!
//! Allowed dependencies: std.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{AssetError, Result};

/// Cache folder used when `$VPTQ_CACHE` is unset or empty, relative to the home directory.
pub const DEFAULT_CACHE_SUBDIR: &str = ".cache/vptq";

/// Resolves the cache root: `env_value` (the caller's `$VPTQ_CACHE`) when set and non-empty,
/// else `home/.cache/vptq`, else `.cache/vptq` relative to the working directory.
pub fn default_cache_dir(env_value: Option<&OsStr>, home: Option<&Path>) -> PathBuf {
    match (env_value, home) {
        (Some(value), _) if !value.is_empty() => PathBuf::from(value),
        (_, Some(home)) if !home.as_os_str().is_empty() => home.join(DEFAULT_CACHE_SUBDIR),
        _ => PathBuf::from(DEFAULT_CACHE_SUBDIR),
    }
}

/// The six Jane Austen novels shipped by `r-cran-janeaustenr`, named as in the R package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Novel {
    /// *Emma* (1815).
    Emma,
    /// *Mansfield Park* (1814).
    MansfieldPark,
    /// *Northanger Abbey* (1817).
    NorthangerAbbey,
    /// *Persuasion* (1817).
    Persuasion,
    /// *Pride and Prejudice* (1813): the main evaluation text.
    PridePrejudice,
    /// *Sense and Sensibility* (1811).
    SenseSensibility,
}

impl Novel {
    /// All six, in the R package's alphabetical order.
    pub const ALL: [Novel; 6] = [
        Novel::Emma,
        Novel::MansfieldPark,
        Novel::NorthangerAbbey,
        Novel::Persuasion,
        Novel::PridePrejudice,
        Novel::SenseSensibility,
    ];

    /// The variable name in the R package, which is also the cached file's stem.
    pub fn r_name(self) -> &'static str {
        match self {
            Novel::Emma => "emma",
            Novel::MansfieldPark => "mansfieldpark",
            Novel::NorthangerAbbey => "northangerabbey",
            Novel::Persuasion => "persuasion",
            Novel::PridePrejudice => "prideprejudice",
            Novel::SenseSensibility => "sensesensibility",
        }
    }
}

impl fmt::Display for Novel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.r_name())
    }
}

impl FromStr for Novel {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Novel::ALL.into_iter().find(|novel| novel.r_name() == s).ok_or_else(|| {
            let names: Vec<&str> = Novel::ALL.iter().map(|n| n.r_name()).collect();
            format!("unknown novel {s:?}; expected one of {}", names.join(", "))
        })
    }
}

/// Relative path of the SmolLM2 GGUF inside the cache.
pub const SMOLLM2_GGUF: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// Relative path of the Qwen2.5-Coder GGUF inside the cache.
pub const QWEN_CODER_GGUF: &str = "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
/// Relative path of the de-tagged Brown corpus inside the cache.
pub const BROWN_TXT: &str = "text/brown.txt";
/// Relative folder of the Austen novels inside the cache.
pub const AUSTEN_DIR: &str = "text/austen";

/// A cache directory holding the fetched assets under fixed relative paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (nothing is created until a fetch).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/rel`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// `models/SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub fn smollm2_gguf(&self) -> PathBuf {
        self.path(SMOLLM2_GGUF)
    }

    /// `models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf` (fetched only on request: 1.1 GB).
    pub fn qwen_coder_gguf(&self) -> PathBuf {
        self.path(QWEN_CODER_GGUF)
    }

    /// `text/brown.txt`: the de-tagged Brown corpus, one sentence per line.
    pub fn brown_txt(&self) -> PathBuf {
        self.path(BROWN_TXT)
    }

    /// `text/austen/<novel>.txt`: one line of the novel per line.
    pub fn austen(&self, novel: Novel) -> PathBuf {
        self.root.join(AUSTEN_DIR).join(format!("{}.txt", novel.r_name()))
    }

    /// Reads `text/brown.txt` and splits it with [`split_calibration_heldout`]; returns owned
    /// `(calibration, held_out)` texts.
    ///
    /// # Errors
    /// [`AssetError::Io`] when the file is missing (run a fetch first) or not UTF-8.
    pub fn brown_split(&self) -> Result<(String, String)> {
        let path = self.brown_txt();
        let text = std::fs::read_to_string(&path).map_err(|e| AssetError::io("reading", &path, e))?;
        let (calibration, held_out) = split_calibration_heldout(&text);
        Ok((calibration.to_owned(), held_out.to_owned()))
    }
}

/// data.md's 90 % rule: with `n` the length in characters, the calibration text is everything
/// before the last `'\n'` that starts before character `floor(0.9 × n)` (computed as `n * 9 / 10`),
/// and the held-out text is everything after that newline. The newline itself belongs to
/// neither. Without such a newline the calibration text is empty and everything is held out.
pub fn split_calibration_heldout(text: &str) -> (&str, &str) {
    let n_chars = text.chars().count();
    let cut_char = n_chars * 9 / 10;
    // Byte offset of character `cut_char` (or the end of the text).
    let cut_byte = text.char_indices().nth(cut_char).map_or(text.len(), |(byte, _)| byte);
    match text[..cut_byte].rfind('\n') {
        Some(newline) => (&text[..newline], &text[newline + 1..]),
        None => ("", text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_prefers_env_then_home() {
        let home = Path::new("/home/u");
        assert_eq!(default_cache_dir(Some(OsStr::new("/data/c")), Some(home)), PathBuf::from("/data/c"));
        assert_eq!(default_cache_dir(Some(OsStr::new("")), Some(home)), PathBuf::from("/home/u/.cache/vptq"));
        assert_eq!(default_cache_dir(None, Some(home)), PathBuf::from("/home/u/.cache/vptq"));
        assert_eq!(default_cache_dir(None, None), PathBuf::from(".cache/vptq"));
    }

    #[test]
    fn accessors_follow_the_layout() {
        let cache = Cache::new("/c");
        assert_eq!(cache.smollm2_gguf(), Path::new("/c/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert_eq!(cache.qwen_coder_gguf(), Path::new("/c/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"));
        assert_eq!(cache.brown_txt(), Path::new("/c/text/brown.txt"));
        assert_eq!(cache.austen(Novel::PridePrejudice), Path::new("/c/text/austen/prideprejudice.txt"));
    }

    #[test]
    fn novel_names_round_trip() {
        for novel in Novel::ALL {
            assert_eq!(novel.r_name().parse::<Novel>(), Ok(novel));
        }
        assert!("ulysses".parse::<Novel>().is_err());
    }

    #[test]
    fn split_cuts_at_last_newline_before_ninety_percent() {
        // 20 chars: 0.9 × 20 = 18 → last newline before index 18 is at index 14.
        let text = "aaaa\nbbbb\ncccc\ndddd\n";
        assert_eq!(text.len(), 20);
        let (calibration, held_out) = split_calibration_heldout(text);
        assert_eq!(calibration, "aaaa\nbbbb\ncccc");
        assert_eq!(held_out, "dddd\n");
    }

    #[test]
    fn split_counts_characters_not_bytes() {
        // 11 chars ("é" is 2 bytes): cut at char 11 * 9 / 10 = 9 ('b'); the newline before is char 8.
        let text = "a\néééééé\nbc";
        let (calibration, held_out) = split_calibration_heldout(text);
        assert_eq!(calibration, "a\néééééé");
        assert_eq!(held_out, "bc");
    }

    #[test]
    fn split_without_newline_holds_everything_out() {
        assert_eq!(split_calibration_heldout("abc"), ("", "abc"));
        assert_eq!(split_calibration_heldout(""), ("", ""));
    }
}
