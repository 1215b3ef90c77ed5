//! `cargo xtask cycles`: no import loops between the modules of a crate.
//!
//! cargo-modules reads each crate with rust-analyzer and prints its graph
//! (`cargo modules dependencies --layout dot`): a node per module and item,
//! an "owns" edge from a module to what it declares (and from a type to its
//! methods), a "uses" edge from a module to what it imports with `use` and
//! from an item to the types in its signature or fields. Here the items are
//! folded into the module they are declared in, as cargo-modules does with
//! `--no-fns --no-types --no-traits`, and every strongly connected set of
//! modules is a loop, reported with the item edges that make it.
//!
//! Why not cargo-modules' own `--acyclic`: in 0.27.0 it runs on the item
//! graph before any filter, where every type owns its methods and a method
//! taking `self` uses its type, so it fails on the first method of every
//! crate (`ShmConfig` <-> `ShmConfig::zeroed`) whatever the flags, and it
//! names one cycle only.
//!
//! Flags: `--cfg-test` so that test modules are read too. Not
//! `--no-externs`/`--no-sysroot`: both stop cargo-modules from loading std,
//! and then a field of type `Vec<other::Type>` no longer leads to `other`.
//!
//! What the graph does not see: paths written inside function bodies
//! (`crate::scan::procs::comm_and_ppid(pid)` in a body makes no edge, while
//! `use crate::scan::procs::comm_and_ppid;` does) and macro bodies. So a
//! module reaches other modules through `use`; xtask holds itself to that
//! with `clippy::absolute_paths` (main.rs, xtask/clippy.toml).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;

use crate::cmd::{path_with_cargo_bin, root, show};

/// One crate target to check.
struct Target {
    name: &'static str,
    args: &'static [&'static str],
}

/// Every crate of the workspace. ipcwatch-ebpf builds only for the bpf
/// target, where its modules exist (`cfg(target_arch = "bpf")`); read for
/// that target, cargo-modules sees them.
const TARGETS: &[Target] = &[
    Target {
        name: "ipcwatch (library)",
        args: &["--package", "ipcwatch", "--lib"],
    },
    Target {
        name: "ipcwatch (binary)",
        args: &["--package", "ipcwatch", "--bin", "ipcwatch"],
    },
    Target {
        name: "ipcwatch-workload",
        args: &[
            "--package",
            "ipcwatch-workload",
            "--bin",
            "ipcwatch-workload",
        ],
    },
    Target {
        name: "ipcwatch-common",
        args: &["--package", "ipcwatch-common", "--lib"],
    },
    Target {
        name: "ipcwatch-ebpf",
        args: &[
            "--package",
            "ipcwatch-ebpf",
            "--bin",
            "ipcwatch",
            "--target",
            "bpfel-unknown-none",
        ],
    },
    Target {
        name: "xtask",
        args: &["--package", "xtask", "--bin", "xtask"],
    },
];

/// Item edges shown per module edge of a loop.
const REASONS_SHOWN: usize = 4;

/// A crate's graph as cargo-modules prints it, folded onto its modules.
#[derive(Debug, Default)]
struct Graph {
    /// The crate's own modules (the root included).
    modules: BTreeSet<String>,
    /// The crate's own nodes, modules and items.
    internal: HashSet<String>,
    /// Module -> module "uses" edges, each with the item edges behind it.
    edges: BTreeMap<(String, String), Vec<(String, String)>>,
}

/// The quoted strings of a DOT line, in order.
fn quoted(line: &str) -> Vec<&str> {
    line.split('"').skip(1).step_by(2).collect()
}

impl Graph {
    /// Parse `cargo modules dependencies --layout dot`.
    fn parse(dot: &str) -> Graph {
        let mut g = Graph::default();
        let mut uses = Vec::new();
        for line in dot.lines().map(str::trim) {
            let q = quoted(line);
            if line.contains(" -> ") {
                if q.len() >= 3 && q[2] == "uses" {
                    uses.push((q[0].to_string(), q[1].to_string()));
                }
            } else if q.len() >= 2 && line.contains(" [label=") {
                // `"path" [label="pub(crate) mod|path", ...]`
                let kind = q[1].split('|').next().unwrap_or_default();
                if kind.starts_with("external") {
                    continue;
                }
                g.internal.insert(q[0].to_string());
                if kind == "crate" || kind.ends_with(" mod") {
                    g.modules.insert(q[0].to_string());
                }
            }
        }
        for (from, to) in uses {
            if let (Some(a), Some(b)) = (g.module_of(&from), g.module_of(&to))
                && a != b
            {
                let key = (a.to_string(), b.to_string());
                g.edges.entry(key).or_default().push((from, to));
            }
        }
        g
    }

    /// The module a node of this crate belongs to: itself for a module,
    /// else the longest module path it starts with (a method belongs to
    /// its type's module, wherever the `impl` is).
    fn module_of(&self, node: &str) -> Option<&str> {
        if !self.internal.contains(node) {
            return None;
        }
        let mut path = node;
        loop {
            if let Some(m) = self.modules.get(path) {
                return Some(m);
            }
            path = &path[..path.rfind("::")?];
        }
    }

    /// The loops: sets of two or more modules that all reach each other
    /// (strongly connected components), each sorted, in order.
    fn loops(&self) -> Vec<Vec<String>> {
        let mut graph = DiGraphMap::<&str, ()>::new();
        for m in &self.modules {
            graph.add_node(m);
        }
        for (a, b) in self.edges.keys() {
            graph.add_edge(a, b, ());
        }
        let mut loops: Vec<Vec<String>> = tarjan_scc(&graph)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut c: Vec<String> = c.into_iter().map(String::from).collect();
                c.sort();
                c
            })
            .collect();
        loops.sort();
        loops
    }
}

/// The loops of one crate, each with the module edges inside it and the
/// item edges behind those.
fn describe(name: &str, g: &Graph, loops: &[Vec<String>]) -> String {
    let mut s = format!(
        "{name}: {} import loop{} between modules\n",
        loops.len(),
        if loops.len() == 1 { "" } else { "s" }
    );
    for (i, members) in loops.iter().enumerate() {
        let _ = writeln!(s, "  loop {}: {}", i + 1, members.join(", "));
        for ((a, b), reasons) in &g.edges {
            if !(members.contains(a) && members.contains(b)) {
                continue;
            }
            let _ = writeln!(s, "    {a} -> {b}");
            for (from, to) in reasons.iter().take(REASONS_SHOWN) {
                let how = if from == a { "imports" } else { "uses" };
                let _ = writeln!(s, "      {from} {how} {to}");
            }
            if reasons.len() > REASONS_SHOWN {
                let _ = writeln!(s, "      ({} more)", reasons.len() - REASONS_SHOWN);
            }
        }
    }
    s
}

/// cargo-modules' graph of `target`.
fn graph_of(target: &Target) -> Result<Graph> {
    let mut cmd = Command::new("cargo");
    cmd.args(["modules", "dependencies"])
        .args(target.args)
        .args(["--cfg-test", "--layout", "dot"])
        .current_dir(root())
        .env("PATH", path_with_cargo_bin())
        .env_remove("RUSTUP_TOOLCHAIN");
    eprintln!("+ {}", show(&cmd));
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", show(&cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            show(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let g = Graph::parse(&String::from_utf8_lossy(&out.stdout));
    if g.modules.is_empty() {
        bail!("`{}` printed no module of the crate", show(&cmd));
    }
    Ok(g)
}

/// Check every crate; fail naming each loop found.
pub fn check() -> Result<()> {
    let started = Instant::now();
    let mut report = String::new();
    let mut failed = Vec::new();
    for target in TARGETS {
        let g = graph_of(target)?;
        let loops = g.loops();
        if loops.is_empty() {
            let n = g.modules.len();
            eprintln!(
                "cycles: {}: no import loop between its {n} module{}",
                target.name,
                if n == 1 { "" } else { "s" }
            );
        } else {
            report.push_str(&describe(target.name, &g, &loops));
            failed.push(target.name);
        }
    }
    eprintln!("cycles: took {:.0} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        eprint!("{report}");
        bail!(
            "modules import each other in a loop in {}",
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trimmed `cargo modules dependencies --layout dot`.
    const DOT: &str = r##"digraph {
    "k" [label="crate|k", fillcolor="#5397c8"]; // "crate" node
    "k::a" [label="pub(crate) mod|k::a", fillcolor="#f8c04c"]; // "mod" node
    "k::a::A" [label="pub struct|k::a::A", fillcolor="#f8c04c"]; // "struct" node
    "k::a::A::new" [label="pub fn|k::a::A::new", fillcolor="#f8c04c"]; // "fn" node
    "k::b" [label="pub(crate) mod|k::b", fillcolor="#f8c04c"]; // "mod" node
    "k::b::B" [label="pub struct|k::b::B", fillcolor="#f8c04c"]; // "struct" node
    "k::c" [label="pub(crate) mod|k::c", fillcolor="#f8c04c"]; // "mod" node
    "k::c::f" [label="pub fn|k::c::f", fillcolor="#f8c04c"]; // "fn" node
    "std::io" [label="external mod|std::io", fillcolor="#81c169"]; // "mod" node
    "std::path::Path" [label="external struct|std::path::Path", fillcolor="#81c169"]; // "struct" node

    "k" -> "k::a" [label="owns", color="#000000", style="solid"] [constraint=true]; // "owns" edge
    "k::a::A" -> "k::a::A::new" [label="owns", color="#000000", style="solid"] [constraint=true]; // "owns" edge
    "k::a::A::new" -> "k::a::A" [label="uses", color="#7f7f7f", style="dashed"] [constraint=false]; // "uses" edge
    "k::a" -> "k::b::B" [label="uses", color="#7f7f7f", style="dashed"] [constraint=false]; // "uses" edge
    "k::b::B" -> "k::a::A" [label="uses", color="#7f7f7f", style="dashed"] [constraint=false]; // "uses" edge
    "k::c" -> "k::a::A" [label="uses", color="#7f7f7f", style="dashed"] [constraint=false]; // "uses" edge
    "k::c::f" -> "std::path::Path" [label="uses", color="#7f7f7f", style="dashed"] [constraint=false]; // "uses" edge
    "k::a" -> "std::io" [label="uses", color="#7f7f7f", style="dashed"] [constraint=false]; // "uses" edge
}
"##;

    #[test]
    fn items_fold_into_their_modules() {
        let g = Graph::parse(DOT);
        assert_eq!(g.modules.len(), 4);
        assert_eq!(g.module_of("k::a::A::new"), Some("k::a"));
        assert_eq!(g.module_of("k::c::f"), Some("k::c"));
        assert_eq!(g.module_of("std::path::Path"), None);
        let edges: Vec<_> = g.edges.keys().cloned().collect();
        assert_eq!(
            edges,
            [
                ("k::a".to_string(), "k::b".to_string()),
                ("k::b".to_string(), "k::a".to_string()),
                ("k::c".to_string(), "k::a".to_string()),
            ]
        );
    }

    #[test]
    fn a_loop_is_named_with_its_edges() {
        let g = Graph::parse(DOT);
        let loops = g.loops();
        assert_eq!(loops, [vec!["k::a".to_string(), "k::b".to_string()]]);
        let text = describe("k", &g, &loops);
        assert_eq!(
            text,
            "k: 1 import loop between modules\n  loop 1: k::a, k::b\n    k::a -> k::b\n      k::a imports k::b::B\n    k::b -> k::a\n      k::b::B uses k::a::A\n"
        );
    }

    #[test]
    fn no_loop_without_a_way_back() {
        let dot = DOT.replace(
            r#""k::b::B" -> "k::a::A" [label="uses""#,
            r#""k::b::B" -> "k::a::A" [label="owns""#,
        );
        assert!(Graph::parse(&dot).loops().is_empty());
    }
}
