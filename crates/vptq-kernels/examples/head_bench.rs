//! Decode GEMV of SmolLM2-135M's tied head (49152 × 576) stored in int8: the f32-widening dot against the
//! integer dot on 15-bit activations ([`vptq_kernels::q8_gemv`]), with dense f16 as a bandwidth reference.
//!
//! `cargo run --release -p vptq-kernels --example head_bench -- [reps]` (default 50), one thread; the fastest of the
//! alternated repetitions.

use half::f16;
use std::time::Instant;
use vptq_kernels::dense::{matmul, DenseWeight};
use vptq_kernels::q8::Q8Weight;
use vptq_kernels::q8_gemv::Q8Act;

#[path = "../tests/common/mod.rs"]
mod common;

use common::rand_vec;

const ROWS: usize = 49152;
const COLS: usize = 576;

/// Runs each job `reps` times, the jobs alternating so that a noisy host slows them alike; returns each job's
/// fastest time in seconds.
fn fastest(reps: usize, jobs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; jobs.len()];
    for _ in 0..reps {
        for (j, b) in jobs.iter_mut().zip(&mut best) {
            let s = Instant::now();
            j();
            *b = b.min(s.elapsed().as_secs_f64());
        }
    }
    best
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let w = rand_vec(1, ROWS * COLS);
    let x = rand_vec(2, COLS);
    let q8 = Q8Weight::quantize(&w, COLS).expect("finite weights");
    let half = DenseWeight::F16(w.iter().map(|&v| f16::from_f32(v)).collect());
    drop(w);
    let y = vec![0f32; ROWS];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("thread pool");
    pool.install(|| {
        let view = q8.view();
        let (mut y1, mut y2, mut y3) = (y.clone(), y.clone(), y);
        let t = fastest(
            reps,
            &mut [
                &mut || {
                    for (r, o) in y1.iter_mut().enumerate() {
                        *o = view.dot(&x, r * COLS);
                    }
                },
                &mut || {
                    let act = Q8Act::new(&x).expect("finite activations");
                    view.gemv_act(&act, 0, &mut y2);
                },
                &mut || matmul(&x, half.view(), &mut y3, 1, COLS, ROWS),
            ],
        );
        let (t_f32, t_int, t_half) = (t[0], t[1], t[2]);
        let gbs = |bytes: usize, t: f64| bytes as f64 / t / 1e9;
        let qb = view.n_bytes();
        println!("int8 head, f32 dot:     {:.3} ms  {:.1} GB/s", t_f32 * 1e3, gbs(qb, t_f32));
        println!(
            "int8 head, integer dot: {:.3} ms  {:.1} GB/s  ({:.2}× the f32 dot)",
            t_int * 1e3,
            gbs(qb, t_int),
            t_f32 / t_int
        );
        println!("f16 head:               {:.3} ms  {:.1} GB/s", t_half * 1e3, gbs(ROWS * COLS * 2, t_half));
    });
}
