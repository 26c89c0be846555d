//! The fuzz targets on stable, without libFuzzer: every seed in
//! `fuzz/seeds/TARGET/` and every crash the fuzzer found (kept in
//! `fuzz/regressions/TARGET/` once fixed) goes through the same entry point
//! as `cargo fuzz run TARGET`, which panics on a broken contract (a panic, or
//! an error message of several lines). Each target must also accept at least
//! one of its seeds, so the fuzzer starts from inputs that reach deep code.

use std::path::Path;

fn inputs(folder: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths
}

#[test]
fn seeds_and_found_crashes_replay_without_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in openweigh::fuzz::TARGETS {
        let seeds = inputs(&fuzz.join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} holds no seed");
        let accepted: Vec<_> = seeds.iter().filter(|p| target(&std::fs::read(p).unwrap())).collect();
        assert!(!accepted.is_empty(), "target {name}: no seed in fuzz/seeds/{name} is accepted");
        let found = inputs(&fuzz.join("regressions").join(name));
        for p in &found {
            target(&std::fs::read(p).unwrap());
        }
        println!("{name}: {} seeds ({} accepted), {} regressions", seeds.len(), accepted.len(), found.len());
    }
    openweigh::fuzz::remove_scratch();
}
