//! Progress display (indicatif on stderr), silenced by `--quiet`.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// A bar over `total` steps.
pub fn bar(quiet: bool, total: u64, message: impl Into<String>) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
            .expect("invariant: static template")
            .progress_chars("=> "),
    );
    pb.set_message(message.into());
    pb
}

/// A spinner for work of unknown length.
pub fn spinner(quiet: bool, message: impl Into<String>) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("invariant: static template"));
    pb.set_message(message.into());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}
