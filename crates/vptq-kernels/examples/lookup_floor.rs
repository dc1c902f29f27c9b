//! What bounds the decode GEMV's inner loop on this CPU: the instruction sequence `vq_fast` compiles to for int8
//! codebooks of lane width 8, against variants with parts removed or replaced. Inline assembly, so that the
//! compiler cannot reshape the variants; x86-64 with AVX2 and FMA only.
//!
//! `cargo run --release -p vptq-kernels --example lookup_floor -- [k…]` (default: 256 4096). Each loop walks 576
//! columns of one block of four index rows, eight columns per iteration, with random indices below k. The block
//! runs 20,000 times, and the fastest of 7 runs is reported, in ns and in cycles per lookup. A cycle is timed on a
//! chain of dependent register-to-register adds, which run at one per cycle.
//! Some variants compute nothing useful; they only bound the cost of the parts they keep.

#[cfg(target_arch = "x86_64")]
mod floor {
    use std::arch::asm;
    use std::time::Instant;

    /// Columns per block (SmolLM2's hidden size).
    pub const N: usize = 576;
    const REPS: usize = 20_000;

    /// The inputs every loop reads: indices `[N, 4]` (block-interleaved, as `u16`), codebook bytes, `x` `[N]`,
    /// and a shuffle mask (loaded into ymm14).
    pub struct Inputs<'a> {
        pub idx: &'a [u16],
        pub cb: *const u8,
        pub x: &'a [f32],
        pub mask: &'a [u8; 32],
    }

    /// One column: `$e` is the entry sequence for a lookup, given its index register, destination ymm and
    /// accumulator; `$a` the four accumulators.
    macro_rules! column {
        ($j:literal, $e:ident, $a0:literal, $a1:literal, $a2:literal, $a3:literal) => {
            concat!(
                "vbroadcastss ymm15, dword ptr [{x} + {q}*4 + ",
                $j,
                "*4]\n",
                "movzx eax, word ptr [{idx} + {q}*8 + ",
                $j,
                "*8 + 0]\n",
                $e!("rax", "ymm8", $a0),
                "movzx r10d, word ptr [{idx} + {q}*8 + ",
                $j,
                "*8 + 2]\n",
                $e!("r10", "ymm9", $a1),
                "movzx r11d, word ptr [{idx} + {q}*8 + ",
                $j,
                "*8 + 4]\n",
                $e!("r11", "ymm10", $a2),
                "movzx r12d, word ptr [{idx} + {q}*8 + ",
                $j,
                "*8 + 6]\n",
                $e!("r12", "ymm11", $a3),
            )
        };
    }

    /// One column as [`column!`], but the four indices come from one 8-byte load and are split in registers.
    macro_rules! column_u64 {
        ($j:literal, $e:ident, $a0:literal, $a1:literal, $a2:literal, $a3:literal) => {
            concat!(
                "vbroadcastss ymm15, dword ptr [{x} + {q}*4 + ",
                $j,
                "*4]\n",
                "mov rax, qword ptr [{idx} + {q}*8 + ",
                $j,
                "*8]\n",
                "movzx r10d, ax\n",
                "shr rax, 16\n",
                "movzx r11d, ax\n",
                "shr rax, 16\n",
                "movzx r12d, ax\n",
                "shr rax, 16\n",
                $e!("r10", "ymm8", $a0),
                $e!("r11", "ymm9", $a1),
                $e!("r12", "ymm10", $a2),
                $e!("rax", "ymm11", $a3),
            )
        };
    }

    /// Eight columns of [`column_u64!`], all on ymm0–3.
    macro_rules! four_acc_u64 {
        ($e:ident) => {
            concat!(
                column_u64!("0", $e, "ymm0", "ymm1", "ymm2", "ymm3"),
                column_u64!("1", $e, "ymm4", "ymm5", "ymm6", "ymm7"),
                column_u64!("2", $e, "ymm0", "ymm1", "ymm2", "ymm3"),
                column_u64!("3", $e, "ymm4", "ymm5", "ymm6", "ymm7"),
                column_u64!("4", $e, "ymm0", "ymm1", "ymm2", "ymm3"),
                column_u64!("5", $e, "ymm4", "ymm5", "ymm6", "ymm7"),
                column_u64!("6", $e, "ymm0", "ymm1", "ymm2", "ymm3"),
                column_u64!("7", $e, "ymm4", "ymm5", "ymm6", "ymm7"),
            )
        };
    }

    /// Eight columns: even ones on accumulators ymm0–3, odd ones on the four given.
    macro_rules! eight_columns {
        ($e:ident, $o0:literal, $o1:literal, $o2:literal, $o3:literal) => {
            concat!(
                column!("0", $e, "ymm0", "ymm1", "ymm2", "ymm3"),
                column!("1", $e, $o0, $o1, $o2, $o3),
                column!("2", $e, "ymm0", "ymm1", "ymm2", "ymm3"),
                column!("3", $e, $o0, $o1, $o2, $o3),
                column!("4", $e, "ymm0", "ymm1", "ymm2", "ymm3"),
                column!("5", $e, $o0, $o1, $o2, $o3),
                column!("6", $e, "ymm0", "ymm1", "ymm2", "ymm3"),
                column!("7", $e, $o0, $o1, $o2, $o3),
            )
        };
    }

    /// Eight columns on one set of four accumulators (ymm0–3).
    macro_rules! four_acc {
        ($e:ident) => {
            eight_columns!($e, "ymm0", "ymm1", "ymm2", "ymm3")
        };
    }

    /// Eight columns, odd ones on a second set of accumulators (ymm4–7): twice the independent FMA chains.
    macro_rules! eight_acc {
        ($e:ident) => {
            eight_columns!($e, "ymm4", "ymm5", "ymm6", "ymm7")
        };
    }

    /// The kernel's lookup: sign-extend 8 int8 lanes from memory, convert, multiply-add.
    macro_rules! i8_entry {
        ($i:literal, $t:literal, $a:literal) => {
            concat!(
                "vpmovsxbd ",
                $t,
                ", qword ptr [{cb} + ",
                $i,
                "*8]\n",
                "vcvtdq2ps ",
                $t,
                ", ",
                $t,
                "\n",
                "vfmadd231ps ",
                $a,
                ", ymm15, ",
                $t,
                "\n",
            )
        };
    }
    /// The kernel's lookup on entries packed at a stride of 6 bytes (indices pre-multiplied by 6): lanes 6 and 7
    /// read the next entry's bytes.
    macro_rules! i8_packed6 {
        ($i:literal, $t:literal, $a:literal) => {
            concat!(
                "vpmovsxbd ",
                $t,
                ", qword ptr [{cb} + ",
                $i,
                "]\n",
                "vcvtdq2ps ",
                $t,
                ", ",
                $t,
                "\n",
                "vfmadd231ps ",
                $a,
                ", ymm15, ",
                $t,
                "\n",
            )
        };
    }
    /// As the kernel without the conversion (wrong sums: a bound only).
    macro_rules! i8_no_cvt {
        ($i:literal, $t:literal, $a:literal) => {
            concat!("vpmovsxbd ", $t, ", qword ptr [{cb} + ", $i, "*8]\n", "vfmadd231ps ", $a, ", ymm15, ", $t, "\n")
        };
    }
    /// bf16 entries (16 bytes; indices pre-doubled): broadcast both halves, move each value to the top of its
    /// lane with one in-lane shuffle, which makes it an f32, and multiply-add.
    macro_rules! bf16_entry {
        ($i:literal, $t:literal, $a:literal) => {
            concat!(
                "vbroadcasti128 ",
                $t,
                ", xmmword ptr [{cb} + ",
                $i,
                "*8]\n",
                "vpshufb ",
                $t,
                ", ",
                $t,
                ", ymm14\n",
                "vfmadd231ps ",
                $a,
                ", ymm15, ",
                $t,
                "\n",
            )
        };
    }
    /// f32 entries (32 bytes; indices pre-multiplied by 4): multiply-add straight from memory.
    macro_rules! f32_entry {
        ($i:literal, $t:literal, $a:literal) => {
            concat!("vfmadd231ps ", $a, ", ymm15, ymmword ptr [{cb} + ", $i, "*8]\n")
        };
    }
    /// The entry load alone.
    macro_rules! load_only {
        ($i:literal, $t:literal, $a:literal) => {
            concat!("vmovq xmm8, qword ptr [{cb} + ", $i, "*8]\n")
        };
    }

    /// Runs `$body` (eight columns) over the block [`REPS`] times, 7 times, and returns the fastest ns per lookup.
    macro_rules! timed {
        ($inp:expr, $body:expr) => {{
            let inp: &Inputs = $inp;
            assert!(inp.idx.len() >= N * 4 && inp.x.len() >= N);
            let mut best = f64::MAX;
            for _ in 0..7 {
                let t = Instant::now();
                for _ in 0..REPS {
                    // SAFETY: every address the loop reads is below `idx[N·4]`, `x[N]`, or an index (below k)
                    // times the entry size into `cb`, which `main` sizes for the largest k; AVX2 and FMA were
                    // detected by the caller.
                    unsafe {
                        asm!(
                            "vxorps ymm0, ymm0, ymm0", "vxorps ymm1, ymm1, ymm1",
                            "vxorps ymm2, ymm2, ymm2", "vxorps ymm3, ymm3, ymm3",
                            "vxorps ymm4, ymm4, ymm4", "vxorps ymm5, ymm5, ymm5",
                            "vxorps ymm6, ymm6, ymm6", "vxorps ymm7, ymm7, ymm7",
                            "vmovdqu ymm14, ymmword ptr [{mask}]",
                            "xor {q:e}, {q:e}",
                            "# {cb} {idx} {x}",
                            "2:",
                            $body,
                            "add {q}, 8",
                            "cmp {q}, {n}",
                            "jb 2b",
                            q = out(reg) _,
                            n = in(reg) N,
                            idx = in(reg) inp.idx.as_ptr(),
                            cb = in(reg) inp.cb,
                            x = in(reg) inp.x.as_ptr(),
                            mask = in(reg) inp.mask.as_ptr(),
                            out("rax") _, out("r10") _, out("r11") _, out("r12") _,
                            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _, out("ymm14") _, out("ymm15") _,
                            options(nostack, readonly),
                        );
                    }
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            best * 1e9 / (REPS * N * 4) as f64
        }};
    }

    /// ns per lookup of each variant: (name, int8 inputs, bf16 inputs, f32 inputs) → rows.
    pub fn run(i8s: &Inputs, i8s6: &Inputs, bf16s: &Inputs, f32s: &Inputs) -> Vec<(&'static str, f64)> {
        vec![
            ("kernel: int8, 4 accumulators", timed!(i8s, four_acc!(i8_entry))),
            ("kernel: int8, 8 accumulators", timed!(i8s, eight_acc!(i8_entry))),
            ("kernel, int8 at a 6-byte stride, 8 acc.", timed!(i8s6, eight_acc!(i8_packed6))),
            ("int8 without the conversion, 8 acc.", timed!(i8s, eight_acc!(i8_no_cvt))),
            ("bf16 entries, shuffle only, 8 acc.", timed!(bf16s, eight_acc!(bf16_entry))),
            ("f32 entries from memory, 8 acc.", timed!(f32s, eight_acc!(f32_entry))),
            ("index and entry loads only", timed!(i8s, four_acc!(load_only))),
            ("kernel, one 8-byte index load per column", timed!(i8s, four_acc_u64!(i8_entry))),
            ("  … at a 6-byte stride", timed!(i8s6, four_acc_u64!(i8_packed6))),
            ("  … loads only", timed!(i8s, four_acc_u64!(load_only))),
        ]
    }

    /// Sets MXCSR's flush-to-zero and denormals-are-zero bits for this thread.
    pub fn flush_denormals() {
        let mut csr = 0u32;
        // SAFETY: reads and writes this thread's MXCSR through a local; only its FTZ (15) and DAZ (6) bits change.
        unsafe {
            asm!("stmxcsr [{0}]", in(reg) &mut csr, options(nostack));
            csr |= (1 << 15) | (1 << 6);
            asm!("ldmxcsr [{0}]", in(reg) &csr, options(nostack, readonly));
        }
    }

    /// Seconds per dependent integer add of two registers: one cycle (an add of an immediate may be folded away
    /// at rename on recent Intel cores, which timed 4 per cycle).
    pub fn cycle() -> f64 {
        const ADDS: u64 = 400_000_000;
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let mut y = 0u64;
            for _ in 0..ADDS / 4 {
                // SAFETY: register arithmetic only.
                unsafe {
                    asm!(
                        "add {0}, {1}", "add {0}, {1}", "add {0}, {1}", "add {0}, {1}",
                        inout(reg) y, in(reg) 1u64, options(nomem, nostack)
                    )
                };
            }
            assert_eq!(y, ADDS);
            best = best.min(t.elapsed().as_secs_f64());
        }
        best / ADDS as f64
    }
}

#[cfg(target_arch = "x86_64")]
fn main() {
    use floor::{Inputs, N};
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
        println!("lookup_floor needs AVX2 and FMA");
        return;
    }
    let ks: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("k: a positive integer")).collect();
    let ks = if ks.is_empty() { vec![256, 4096] } else { ks };
    let kmax = *ks.iter().max().expect("at least one k");
    assert!((1..=8192).contains(&kmax), "k ≤ 8192 (indices are pre-multiplied by 4 in u16)");
    let mut st = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        st
    };
    // Small integers, exact in every precision; 32 bytes per entry covers the widest (f32) layout.
    let cb: Vec<u8> = (0..kmax * 32).map(|_| (rnd() % 7) as u8).collect();
    let x = vec![0.5f32; N];
    // Byte 2t, 2t+1 of the 16-byte bf16 entry into the top half of lane t (0x80: zero).
    let m: [u8; 32] = std::array::from_fn(|b| {
        let (t, pos) = ((b % 16) / 4 + 4 * (b / 16), b % 4);
        if pos >= 2 {
            (2 * t + pos - 2) as u8 & 15
        } else {
            0x80
        }
    });
    // Small integers read as f32 are denormals, which Intel cores multiply through a microcode assist: flush them.
    floor::flush_denormals();
    let s_cycle = floor::cycle();
    println!("one cycle ≈ {:.3} ns ({:.2} GHz)", s_cycle * 1e9, 1e-9 / s_cycle);
    for k in ks {
        let idx: Vec<u16> = (0..N * 4).map(|_| (rnd() % k as u64) as u16).collect();
        let scaled = |f: u16| idx.iter().map(|&i| i * f).collect::<Vec<u16>>();
        let (idx2, idx4, idx6) = (scaled(2), scaled(4), scaled(6));
        let i8s = Inputs { idx: &idx, cb: cb.as_ptr(), x: &x, mask: &m };
        let i8s6 = Inputs { idx: &idx6, cb: cb.as_ptr(), x: &x, mask: &m };
        let bf16s = Inputs { idx: &idx2, cb: cb.as_ptr(), x: &x, mask: &m };
        let f32s = Inputs { idx: &idx4, cb: cb.as_ptr(), x: &x, mask: &m };
        println!("k = {k}: int8 {} KiB, bf16 {} KiB, f32 {} KiB", (k * 8) >> 10, (k * 16) >> 10, (k * 32) >> 10);
        for (name, ns) in floor::run(&i8s, &i8s6, &bf16s, &f32s) {
            println!("  {name:40} {ns:.3} ns  {:.2} cycles per lookup", ns * 1e-9 / s_cycle);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("lookup_floor is x86-64 only");
}
