//! The layering rule over a module tree: strongly connected components of the import
//! graph, and which of them are wider than a parent module and its children.

use std::collections::{BTreeSet, VecDeque};

use crate::modules::{Edge, Tree};

/// A forbidden circle: the whole strongly connected component and one shortest circle
/// through it that is itself wider than a parent and its children.
#[derive(Debug)]
pub struct Circle {
    /// Every module of the component.
    pub members: Vec<usize>,
    /// The circle to print, edge by edge.
    pub path: Vec<Edge>,
}

/// What [`check`] found.
#[derive(Debug)]
pub struct Report {
    /// Distinct module-to-module edges.
    pub edges: usize,
    /// Components wider than a parent module and its children.
    pub circles: Vec<Circle>,
}

/// Finds every import circle of `tree` that spans more than a parent and its children.
pub fn check(tree: &Tree) -> Report {
    let n = tree.modules.len();
    let mut adj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for e in &tree.edges {
        adj[e.from].insert(e.to);
    }
    let edges = adj.iter().map(BTreeSet::len).sum();
    let mut circles = Vec::new();
    for scc in components(&adj) {
        if scc.len() < 2 || within_one_family(tree, &scc) {
            continue;
        }
        let path = scc
            .iter()
            .filter_map(|&start| shortest_circle(&adj, &scc, start))
            .find(|c| !within_one_family(tree, c))
            .or_else(|| shortest_circle(&adj, &scc, scc[0]))
            .unwrap_or_default();
        let path = path
            .windows(2)
            .map(|w| {
                tree.edges
                    .iter()
                    .find(|e| e.from == w[0] && e.to == w[1])
                    .cloned()
                    .expect("a circle follows edges")
            })
            .collect();
        circles.push(Circle { members: scc, path });
    }
    Report { edges, circles }
}

/// Whether every module of `set` is one module P or a direct child of P. Under the crate
/// root this means the root and one top-level module: a circle between two top-level
/// modules is exactly the layering this check is for.
pub fn within_one_family(tree: &Tree, set: &[usize]) -> bool {
    let parent = |m: usize| tree.modules[m].parent;
    let candidates = [Some(set[0]), parent(set[0])];
    candidates.into_iter().flatten().any(|p| {
        let family = set.iter().all(|&m| m == p || parent(m) == Some(p));
        let children = set.iter().filter(|&&m| m != p).count();
        family && (p != 0 || children <= 1)
    })
}

/// The strongly connected components of `adj` (Tarjan), each sorted.
fn components(adj: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        adj: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in s.adj[v].iter() {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                scc.push(w);
                if w == v {
                    break;
                }
            }
            scc.sort();
            s.out.push(scc);
        }
    }
    let n = adj.len();
    let mut s = State {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: vec![],
        next: 0,
        out: vec![],
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// The shortest circle from `start` back to itself inside `within`, as its modules with
/// `start` first and last.
fn shortest_circle(adj: &[BTreeSet<usize>], within: &[usize], start: usize) -> Option<Vec<usize>> {
    let mut prev = vec![None; adj.len()];
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &adj[v] {
            if !within.contains(&w) {
                continue;
            }
            if w == start {
                let mut path = vec![start, v];
                let mut cur = v;
                while let Some(p) = prev[cur] {
                    path.push(p);
                    cur = p;
                }
                if *path.last().expect("non-empty") != start {
                    path.push(start);
                }
                path.reverse();
                path.dedup();
                if path.first() != path.last() {
                    path.push(start);
                }
                return Some(path);
            }
            if prev[w].is_none() && w != start {
                prev[w] = Some(v);
                queue.push_back(w);
            }
        }
    }
    None
}

/// Circles accepted for now: per crate, sets of top-level modules.
#[derive(Debug, Default)]
pub struct AllowList {
    entries: Vec<(String, BTreeSet<String>)>,
}

impl AllowList {
    /// Reads `<crate> <module> <module> …` lines; `#` starts a comment.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let krate = words.next()?.to_string();
                Some((krate, words.map(str::to_string).collect()))
            })
            .collect();
        AllowList { entries }
    }

    /// Whether `circle` in crate `krate` lies wholly under one entry's top-level modules.
    pub fn allows(&self, krate: &str, circle: &Circle, tree: &Tree) -> bool {
        self.entries.iter().any(|(k, mods)| {
            k == krate
                && circle.members.iter().all(|&m| {
                    tree.modules[m]
                        .path
                        .first()
                        .is_some_and(|top| mods.contains(top))
                })
        })
    }
}

/// Declared layers per crate: top-level modules from the top layer down.
#[derive(Debug, Default)]
pub struct Layers {
    entries: Vec<(String, Vec<BTreeSet<String>>)>,
}

impl Layers {
    /// Reads `<crate>: <modules> | <modules> | …` lines; `#` starts a comment.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter_map(|l| l.split_once(':'))
            .map(|(krate, layers)| {
                let layers = layers
                    .split('|')
                    .map(|l| l.split_whitespace().map(str::to_string).collect())
                    .collect();
                (krate.trim().to_string(), layers)
            })
            .collect();
        Layers { entries }
    }

    /// The edges of `tree` (crate `krate`) that import from a layer above their own. Unit
    /// tests (modules named `tests` and below) may: a controller's test may parse flags.
    pub fn violations<'t>(&self, krate: &str, tree: &'t Tree) -> Vec<&'t Edge> {
        let Some((_, layers)) = self.entries.iter().find(|(k, _)| k == krate) else {
            return vec![];
        };
        let layer_of = |m: usize| {
            let top = tree.modules[m].path.first()?;
            layers.iter().position(|l| l.contains(top))
        };
        tree.edges
            .iter()
            .filter(|e| !tree.modules[e.from].path.iter().any(|s| s == "tests"))
            .filter(|e| matches!((layer_of(e.from), layer_of(e.to)), (Some(f), Some(t)) if t < f))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::Module;
    use std::path::PathBuf;

    /// A tree with modules `a`, `a::x`, `a::y`, `b`, and the given edges by name.
    fn tree(edges: &[(&str, &str)]) -> Tree {
        let names = ["", "a", "a::x", "a::y", "b"];
        let modules = names
            .iter()
            .map(|n| Module {
                path: n
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                parent: match *n {
                    "" => None,
                    "a::x" | "a::y" => Some(1),
                    _ => Some(0),
                },
            })
            .collect();
        let idx = |n: &str| names.iter().position(|m| *m == n).unwrap();
        Tree {
            modules,
            edges: edges
                .iter()
                .map(|(f, t)| Edge {
                    from: idx(f),
                    to: idx(t),
                    file: PathBuf::from("x.rs"),
                    line: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn a_parent_and_its_children_may_import_each_other() {
        let t = tree(&[
            ("a", "a::x"),
            ("a::x", "a"),
            ("a::x", "a::y"),
            ("a::y", "a"),
        ]);
        assert!(check(&t).circles.is_empty());
    }

    #[test]
    fn a_circle_through_another_top_level_module_is_reported_with_its_edges() {
        let t = tree(&[
            ("a::x", "b"),
            ("b", "a::y"),
            ("a::y", "a::x"),
            ("a", "a::x"),
        ]);
        let r = check(&t);
        assert_eq!(r.circles.len(), 1);
        let names: Vec<String> = r.circles[0].path.iter().map(|e| t.name(e.from)).collect();
        assert_eq!(names, ["a::x", "b", "a::y"]);
        let allow = AllowList::parse("# why\nother a b\n");
        assert!(!allow.allows("crate", &r.circles[0], &t));
        assert!(AllowList::parse("crate a b # why").allows("crate", &r.circles[0], &t));
    }

    #[test]
    fn an_import_from_a_higher_layer_is_a_violation() {
        let t = tree(&[("a::x", "b"), ("b", "a")]);
        let layers = Layers::parse("# top first\ncrate: b | a\n");
        let v = layers.violations("crate", &t);
        assert_eq!(v.len(), 1);
        assert_eq!(
            (t.name(v[0].from), t.name(v[0].to)),
            ("a::x".into(), "b".into())
        );
        assert!(layers.violations("other", &t).is_empty());
    }
}
