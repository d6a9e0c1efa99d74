//! Trials of one harness version share one copy of its root (`harness::base`) and each get
//! a private writable view of it (an overlay where the host allows, else a clone or copy).
//! Independence: a trial's writes are never seen by another trial, by the shared copy or
//! by the user's tree, under every isolation this host offers and with the copy fallback.

// Which view each isolation got is worth seeing with --nocapture.
#![allow(clippy::print_stderr)]

use std::path::Path;

use autoharness::evals::case;
use autoharness::harness::base;
use autoharness::harness::manifest::Manifest;
use autoharness::sandbox;
use autoharness::trial::{Runner, Trial, Version};

/// Each trial checks it sees the pristine tree, then changes it: a write that leaked from
/// another trial (or into the shared copy) makes a later trial fail. It prints the
/// filesystem type of its cwd (`overlay` when it runs in one).
const RUN: &str = r#"test "$(cat data.txt)" = base && test -f keep.txt && test ! -e other && test "$(cat sub/deep.txt)" = deep && echo changed > data.txt && echo x > other && rm keep.txt && echo y >> sub/deep.txt && awk -v d="$PWD" '$2 == d { print $3 }' /proc/self/mounts"#;

fn harness(root: &Path) -> Manifest {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("data.txt"), "base\n").unwrap();
    std::fs::write(root.join("keep.txt"), "keep\n").unwrap();
    std::fs::write(root.join("sub/deep.txt"), "deep\n").unwrap();
    // A script, not the command itself: paths named in `run` are granted to trials.
    std::fs::write(root.join("trial.sh"), RUN).unwrap();
    std::fs::write(root.join("harness.toml"), "name = \"h\"\nrun = \"sh trial.sh\"\n").unwrap();
    Manifest::load(&root.join("harness.toml")).unwrap()
}

fn pristine(tree: &Path) {
    assert_eq!(std::fs::read_to_string(tree.join("data.txt")).unwrap(), "base\n", "{}", tree.display());
    assert!(tree.join("keep.txt").is_file(), "{}", tree.display());
    assert!(!tree.join("other").exists(), "{}", tree.display());
    assert_eq!(std::fs::read_to_string(tree.join("sub/deep.txt")).unwrap(), "deep\n", "{}", tree.display());
}

#[test]
fn trial_views_are_private_and_the_shared_copy_is_never_written() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for isolation in crate::sandbox::modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let manifest = harness(&root);
        let cases_dir = dir.path().join("cases");
        std::fs::create_dir_all(&cases_dir).unwrap();
        std::fs::write(
            cases_dir.join("c-1.json"),
            r#"{"id": "c-1", "harness": "h", "input": "x", "checks": [{"kind": "no_error"}]}"#,
        )
        .unwrap();
        let case = case::read_case(&cases_dir.join("c-1.json"), None).unwrap();
        let version = Version::new(manifest, root.clone()).unwrap();
        let mut runner = Runner::new(None, 2, dir.path().join("x.trials/p1/trials"));
        runner.use_cache = false;
        runner.isolation = isolation;
        let overlay = rt.block_on(sandbox::overlay_usable(isolation));
        let trials: Vec<Trial> = (0..6).map(|seed| Trial { case: 0, seed }).collect();
        let records = rt.block_on(runner.run(&version, &[case], &trials, &|_| {})).unwrap();
        for rec in &records {
            assert!(rec.passed, "{isolation:?} seed {}: {:?} {}", rec.seed, rec.reason, rec.stderr_tail);
        }
        for rec in &records {
            let fs_type = rec.output.trim();
            assert_eq!(fs_type == "overlay", overlay, "{isolation:?}: cwd is `{fs_type}`, overlay usable: {overlay}");
        }
        // One shared copy, beside the store's trial folders, untouched; the user's tree too.
        let roots = dir.path().join("x.trials/roots");
        let shared: Vec<_> = std::fs::read_dir(&roots).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(shared.len(), 1, "{shared:?}");
        assert_eq!(shared[0].file_name().unwrap().to_string_lossy(), version.hash);
        pristine(&shared[0]);
        pristine(&root);
        // The views are gone once the trials are done; their io folders are kept.
        for seed in 0..6 {
            let trial = dir.path().join(format!("x.trials/p1/trials/{}/c-1/seed-{seed}", &version.hash[..12]));
            assert!(trial.join("io").is_dir());
            assert!(!trial.join("work").exists() && !trial.join("layer").exists(), "{}", trial.display());
        }
        eprintln!("{isolation:?}: 6 private views, overlay: {overlay}");
    }
}

/// The fallback where no overlay can be mounted: each view is a copy (or clone) of the
/// shared copy, and writes to one are seen by no other view nor by the shared copy.
#[test]
fn trial_views_copy_fallback_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let manifest = harness(&root);
    let hash = autoharness::harness::workspace::content_hash(&root, &manifest.filter).unwrap();
    let shared = base::shared(&root, &manifest.filter, &hash, &dir.path().join("roots")).unwrap();
    // A tree whose content no longer has the hash (edited mid-copy) is never kept under it.
    let stale = "0".repeat(64);
    let err = base::shared(&root, &manifest.filter, &stale, &dir.path().join("roots")).unwrap_err();
    assert!(format!("{err:#}").contains("changed while autoharness copied it"), "{err:#}");
    assert!(!dir.path().join("roots").join(&stale).exists());
    // A second call (another trial, another process) reuses it.
    assert_eq!(base::shared(&root, &manifest.filter, &hash, &dir.path().join("roots")).unwrap(), shared);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (work_a, view_a) = base::View::make(&shared, &a, false).unwrap();
    let (work_b, _) = base::View::make(&shared, &b, false).unwrap();
    assert!(view_a.overlay().is_none());
    let status = std::process::Command::new("sh").arg("trial.sh").current_dir(&work_a).status().unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(work_a.join("data.txt")).unwrap(), "changed\n");
    pristine(&work_b);
    pristine(&shared);
    pristine(&root);
    view_a.remove(&work_a);
    assert!(!work_a.exists());
}
