//! The module graph in the crate doc (`src/lib.rs`) is the one the sources have, and it has
//! no circles: a module that starts using another shows up here before it can close a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `crate::<module>` uses per top-level module, read from the sources (comments left out).
fn graph_of_sources(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let top = rel.components().next().expect("a component").as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let code: String = std::fs::read_to_string(&path)
                .expect("read source")
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            let uses = graph.entry(top.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if !name.is_empty() && name != top {
                    uses.insert(name);
                }
            }
        }
    }
    graph
}

/// The graph as the crate doc draws it: `//!  a -> b c` lines, and a last line of leaves.
fn graph_of_doc(lib: &str) -> Graph {
    let block = lib.split("//! Module graph").nth(1).expect("the crate doc has a module graph");
    let lines = block.lines().map(|l| l.trim_start_matches("//!").trim());
    let mut graph = Graph::new();
    for line in lines.skip_while(|l| !l.starts_with("```text")).skip(1).take_while(|l| !l.starts_with("```")) {
        if let Some((from, to)) = line.split_once("->") {
            graph.insert(from.trim().to_string(), to.split_whitespace().map(str::to_string).collect());
        } else if let Some(leaves) = line.strip_suffix(": leaves") {
            for leaf in leaves.split(',') {
                graph.insert(leaf.trim().to_string(), BTreeSet::new());
            }
        }
    }
    graph
}

fn has_circle(graph: &Graph) -> Option<String> {
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = stack.pop() {
            if m == start {
                return Some(start.clone());
            }
            if seen.insert(m.clone()) {
                stack.extend(graph.get(m).into_iter().flatten());
            }
        }
    }
    None
}

#[test]
fn the_crate_doc_draws_the_module_graph_the_sources_have_and_it_has_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = graph_of_sources(&root.join("src"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("read lib.rs");
    let doc = graph_of_doc(&lib);
    assert_eq!(doc, sources, "the crate doc's module graph (left) differs from the sources' (right)");
    assert_eq!(has_circle(&sources), None, "an import circle through this module");
}
