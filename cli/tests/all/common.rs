//! Running the binary and scratch folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `shadergen` with `args`.
pub fn shadergen<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadergen")).args(args).output().expect("the shadergen binary runs")
}

/// The captured stdout, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The captured stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit status, showing both streams when it differs.
#[track_caller]
pub fn assert_status(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// An empty folder of its own under the system temp folder, removed on drop.
pub struct Scratch {
    root: PathBuf,
}

impl Scratch {
    /// A fresh folder named after the process and the test.
    pub fn new(test: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("shadergen-cli-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the scratch folder");
        Scratch { root }
    }

    /// A path inside the scratch folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Names of the entries of the scratch folder, sorted.
    pub fn entries(&self) -> Vec<String> {
        entries(&self.root)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Names of the entries of `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a folder entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The number of tiers `target` has, from codegen's profile table.
pub fn tier_count(target: &str) -> usize {
    let target: codegen::Target = target.parse().expect("a known target");
    target.info().tiers.len()
}
