//! iptables rules for the fault tests, kept in a chain of their own: the
//! chain is jumped to from a built-in one (`INPUT`, `OUTPUT`) and is
//! removed with everything in it when the value drops, so a failed test
//! leaves no rule behind.

use std::process::Command;

/// A chain of rules, in force while this value lives.
pub struct Chain {
    name: String,
    from: &'static str,
}

fn iptables(args: &[&str]) {
    let out = Command::new("iptables")
        .args(args)
        .output()
        .expect("iptables (installed with Docker)");
    assert!(
        out.status.success(),
        "iptables {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Chain {
    /// Makes chain `name` with `rules` (each one rule's match and target,
    /// in order), then jumps to it from the start of `from`.
    pub fn new(name: &str, from: &'static str, rules: &[Vec<&str>]) -> Self {
        // One left by a test that was killed: removed first.
        drop(Self {
            name: name.to_string(),
            from,
        });
        iptables(&["-N", name]);
        for r in rules {
            iptables(&[&["-A", name][..], r].concat());
        }
        iptables(&["-I", from, "-j", name]);
        Self {
            name: name.to_string(),
            from,
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        for args in [
            &["-D", self.from, "-j", &self.name][..],
            &["-F", &self.name],
            &["-X", &self.name],
        ] {
            let _ = Command::new("iptables").args(args).output();
        }
    }
}
