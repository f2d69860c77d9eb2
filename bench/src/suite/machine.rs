//! The machine a suite ran on, for the report: CPU model and count and
//! memory (from `/proc`, with `procfs`), the kernel release, and the
//! versions of the tools the configuration names.

use std::collections::BTreeMap;

use procfs::Current;
use serde::{Deserialize, Serialize};

/// The machine the suite ran on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// CPUs available.
    pub cpus: usize,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Tool versions: name → first line of its version output.
    pub versions: Vec<(String, String)>,
}

/// The first line of what `argv` prints (on stdout or stderr).
fn version(argv: &[String]) -> Option<String> {
    let out = std::process::Command::new(argv.first()?)
        .args(&argv[1..])
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text.lines().next()?.trim().to_owned())
}

impl Machine {
    /// Reads `/proc` and runs the version commands.
    pub fn detect(versions: &BTreeMap<String, Vec<String>>) -> Self {
        let cpuinfo = procfs::CpuInfo::current().ok();
        Self {
            cpu: cpuinfo
                .as_ref()
                .and_then(|c| c.model_name(0))
                .map(|m| m.trim().to_owned())
                .unwrap_or_default(),
            // Every CPU of the machine, not only those this process may use.
            cpus: cpuinfo.as_ref().map_or(0, procfs::CpuInfo::num_cores),
            memory_mib: procfs::Meminfo::current().map_or(0, |m| m.mem_total / 1024 / 1024),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().trim().to_owned())
                .unwrap_or_default(),
            versions: versions
                .iter()
                .filter_map(|(name, argv)| Some((name.clone(), version(argv)?)))
                .collect(),
        }
    }
}
