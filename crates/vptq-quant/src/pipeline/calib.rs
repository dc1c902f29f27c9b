//! Calibration windows: `N` sequences of `L` tokens drawn from the calibration text's tokens.

use super::{PipelineError, Result};
use crate::algo::rng::SplitMix64;

/// `samples` windows of `len` tokens from `tokens`. Start positions are drawn uniformly (seeded), as GPTQ and
/// the reference sample their calibration sequences; when the text holds at least `samples` non-overlapping
/// windows, the windows are drawn without overlap (whole-window slots, shuffled), so no text is counted twice.
///
/// # Errors
/// `InvalidArgument` when `samples` or `len` is 0, or the text holds fewer than `len` tokens.
pub fn calibration_windows(tokens: &[u32], samples: usize, len: usize, seed: u64) -> Result<Vec<Vec<u32>>> {
    if samples == 0 || len == 0 {
        return Err(PipelineError::InvalidArgument("calibration needs at least one window of one token".into()));
    }
    if tokens.len() < len {
        return Err(PipelineError::InvalidArgument(format!(
            "too little calibration text: {} tokens, fewer than one window of {len}",
            tokens.len()
        )));
    }
    let mut rng = SplitMix64::new(seed);
    let slots = tokens.len() / len;
    let starts: Vec<usize> = if slots >= samples {
        // Fisher–Yates on the slot numbers, keeping the first `samples`, then in text order.
        let mut s: Vec<usize> = (0..slots).collect();
        for i in 0..samples {
            let j = i + rng.below(slots - i);
            s.swap(i, j);
        }
        let mut s: Vec<usize> = s[..samples].iter().map(|&slot| slot * len).collect();
        s.sort_unstable();
        s
    } else {
        (0..samples).map(|_| rng.below(tokens.len() - len + 1)).collect()
    };
    Ok(starts.into_iter().map(|s| tokens[s..s + len].to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_seeded_disjoint_and_checked() {
        let t: Vec<u32> = (0..100).collect();
        let w = calibration_windows(&t, 5, 10, 1).unwrap();
        assert_eq!(w.len(), 5);
        assert!(w.iter().all(|w| w.len() == 10 && w[0] % 10 == 0 && w.windows(2).all(|p| p[1] == p[0] + 1)));
        let mut firsts: Vec<u32> = w.iter().map(|w| w[0]).collect();
        firsts.dedup();
        assert_eq!(firsts.len(), 5, "disjoint slots");
        assert_eq!(w, calibration_windows(&t, 5, 10, 1).unwrap(), "same seed, same windows");
        assert_ne!(w, calibration_windows(&t, 5, 10, 2).unwrap());
        // More windows than fit: overlapping random starts, still in range.
        let w = calibration_windows(&t, 30, 40, 3).unwrap();
        assert!(w.iter().all(|w| w.len() == 40 && w[39] < 100));
        assert!(calibration_windows(&t, 1, 101, 0).is_err());
        assert!(calibration_windows(&t, 0, 10, 0).is_err());
    }
}
