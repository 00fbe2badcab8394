//! Damaged input never panics: real segments with flipped bytes, cut ends, inserted junk and
//! shuffled packets go through both remux passes, which must end in an MP4 with a sound box
//! structure or in an error.

mod common;

use anyhow::Result;
use common::*;
use edgevideo_transcoder::mux::{remux, RemuxError};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut data = original.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 => {
                for _ in 0..1 + rng.below(200) {
                    let at = rng.below(data.len());
                    data[at] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let len = rng.below(data.len());
                data.truncate(len.max(1));
            }
            2 => {
                let at = rng.below(data.len());
                let junk: Vec<u8> = (0..rng.below(1000)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, junk);
            }
            3 => {
                // Swap two packet-sized blocks.
                let packets = data.len() / 188;
                if packets > 2 {
                    let a = rng.below(packets) * 188;
                    let b = rng.below(packets) * 188;
                    for i in 0..188 {
                        data.swap(a + i, b + i);
                    }
                }
            }
            _ => {
                // Zero a run of bytes (lost sectors).
                let at = rng.below(data.len());
                let end = (at + rng.below(5000)).min(data.len());
                data[at..end].fill(0);
            }
        }
    }
    data
}

#[test]
fn mutated_segments_never_panic() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("src");
    let segs = generate_segments(&dir, 4, &[])?;
    let original = std::fs::read(&segs[0])?;
    let second = std::fs::read(&segs[1])?;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut ok, mut failed) = (0, 0);
    for round in 0..150 {
        let a = tmp.path().join("a.ts");
        let b = tmp.path().join("b.ts");
        std::fs::write(&a, mutate(&mut rng, &original))?;
        std::fs::write(&b, mutate(&mut rng, &second))?;
        let out = tmp.path().join("out.mp4");
        match remux(&[a.as_path(), b.as_path()], &out, &()) {
            Ok(summary) => {
                ok += 1;
                assert_eq!(
                    top_level_boxes(&out)?,
                    vec!["ftyp", "moov", "mdat"],
                    "round {round}"
                );
                assert_eq!(summary.size_bytes, std::fs::metadata(&out)?.len());
            }
            Err(_) => failed += 1,
        }
    }
    // Most damage is recoverable; some (no keyframe left) is refused.
    assert!(
        ok > 50,
        "only {ok} of 150 mutated inputs were recovered ({failed} refused)"
    );
    Ok(())
}

#[test]
fn pure_noise_is_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut rng = Rng(42);
    let noise: Vec<u8> = (0..1_000_000).map(|_| rng.next() as u8).collect();
    let input = tmp.path().join("noise.ts");
    std::fs::write(&input, noise)?;
    let result = remux(&[input.as_path()], &tmp.path().join("out.mp4"), &());
    assert!(matches!(result, Err(RemuxError::NoVideo)), "{result:?}");
    Ok(())
}
