//! A crate's module tree, read along its `mod` declarations, and the import edges between
//! its modules.

use std::path::{Path, PathBuf};

use crate::lex::{lex, Tok, Token};

/// One module: its path from the crate root and its parent.
#[derive(Debug)]
pub struct Module {
    /// Segments from the crate root (empty for the root).
    pub path: Vec<String>,
    /// The enclosing module (`None` for the root).
    pub parent: Option<usize>,
}

/// One use of a path: module `from` names something in module `to`.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The module the path is written in.
    pub from: usize,
    /// The deepest module the path names.
    pub to: usize,
    /// Where it is written.
    pub file: PathBuf,
    /// Line of the path's first segment.
    pub line: usize,
}

/// A crate's modules and import edges.
#[derive(Debug, Default)]
pub struct Tree {
    /// Every module; index 0 is the crate root.
    pub modules: Vec<Module>,
    /// Every path use between two different modules.
    pub edges: Vec<Edge>,
}

impl Tree {
    /// `crate::a::b` style name of module `m`.
    pub fn name(&self, m: usize) -> String {
        let p = &self.modules[m].path;
        if p.is_empty() {
            "crate".into()
        } else {
            p.join("::")
        }
    }

    fn child(&self, m: usize, name: &str) -> Option<usize> {
        self.modules
            .iter()
            .position(|c| c.parent == Some(m) && c.path.last().is_some_and(|l| l == name))
    }

    fn add_child(&mut self, m: usize, name: &str) -> usize {
        if let Some(c) = self.child(m, name) {
            return c;
        }
        let mut path = self.modules[m].path.clone();
        path.push(name.to_string());
        self.modules.push(Module {
            path,
            parent: Some(m),
        });
        self.modules.len() - 1
    }

    /// The deepest module named by a prefix of `segments`, read from the crate root.
    fn resolve(&self, segments: &[String]) -> usize {
        let mut m = 0;
        for s in segments {
            match self.child(m, s) {
                Some(c) => m = c,
                None => break,
            }
        }
        m
    }
}

/// Reads the crate whose root file is `root`.
pub fn load(root: &Path) -> Result<Tree, String> {
    let mut tree = Tree {
        modules: vec![Module {
            path: vec![],
            parent: None,
        }],
        edges: vec![],
    };
    let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut raw = Vec::new();
    load_file(&mut tree, root, 0, &dir, &mut raw)?;
    // Paths are resolved once every module is known.
    for (from, segments, file, line) in raw {
        let to = tree.resolve(&segments);
        if to != from {
            tree.edges.push(Edge {
                from,
                to,
                file,
                line,
            });
        }
    }
    Ok(tree)
}

/// A path use before resolution: module, absolute segments, file, line.
type RawUse = (usize, Vec<String>, PathBuf, usize);

/// Reads `file` as module `module`, whose child modules' files live in `child_dir`.
fn load_file(
    tree: &mut Tree,
    file: &Path,
    module: usize,
    child_dir: &Path,
    raw: &mut Vec<RawUse>,
) -> Result<(), String> {
    let src = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let toks = lex(&src);
    // (module, its child directory, brace depth its block closes at)
    let mut stack: Vec<(usize, PathBuf, usize)> = vec![(module, child_dir.to_path_buf(), 0)];
    let mut depth = 0usize;
    let mut path_attr: Option<String> = None;
    let mut i = 0;
    while i < toks.len() {
        let (cur, cur_dir) = {
            let top = stack.last().expect("the file's module is never popped");
            (top.0, top.1.clone())
        };
        match &toks[i].tok {
            Tok::Punct('#') if is_path_attr(&toks[i..]) => {
                if let Tok::Str(p) = &toks[i + 4].tok {
                    path_attr = Some(p.clone());
                }
                i += 6;
                continue;
            }
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if stack.len() > 1 && stack.last().is_some_and(|t| t.2 == depth) {
                    stack.pop();
                }
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(Tok::Ident(name)), Some(next)) = (
                    toks.get(i + 1).map(|t| &t.tok),
                    toks.get(i + 2).map(|t| &t.tok),
                ) {
                    let child = tree.add_child(cur, name);
                    match next {
                        Tok::Punct(';') => {
                            let (child_file, grand_dir) = match path_attr.take() {
                                Some(p) => {
                                    let f = file.parent().unwrap_or(Path::new(".")).join(p);
                                    let d = f.parent().unwrap_or(Path::new(".")).to_path_buf();
                                    (f, d)
                                }
                                None => {
                                    let flat = cur_dir.join(format!("{name}.rs"));
                                    if flat.is_file() {
                                        (flat, cur_dir.join(name))
                                    } else {
                                        (cur_dir.join(name).join("mod.rs"), cur_dir.join(name))
                                    }
                                }
                            };
                            load_file(tree, &child_file, child, &grand_dir, raw)?;
                            i += 3;
                            continue;
                        }
                        Tok::Punct('{') => {
                            path_attr = None;
                            depth += 1;
                            stack.push((child, cur_dir.join(name), depth - 1));
                            i += 3;
                            continue;
                        }
                        _ => {}
                    }
                }
            }
            Tok::Ident(kw)
                if matches!(kw.as_str(), "crate" | "$crate" | "super" | "self")
                    && matches!(toks.get(i + 1).map(|t| &t.tok), Some(Tok::PathSep))
                    && !matches!(i.checked_sub(1).map(|p| &toks[p].tok), Some(Tok::PathSep)) =>
            {
                let line = toks[i].line;
                let mut base = match kw.as_str() {
                    "crate" | "$crate" => vec![],
                    _ => tree.modules[cur].path.clone(),
                };
                let mut j = i;
                if kw == "self" {
                    j += 2;
                } else if kw == "super" {
                    while matches!(toks.get(j).map(|t| &t.tok), Some(Tok::Ident(s)) if s == "super")
                        && matches!(toks.get(j + 1).map(|t| &t.tok), Some(Tok::PathSep))
                    {
                        base.pop();
                        j += 2;
                    }
                } else {
                    j += 2;
                }
                let (paths, next) = use_tree(&toks, j, base);
                for p in paths {
                    raw.push((cur, p, file.to_path_buf(), line));
                }
                i = next.max(i + 1);
                continue;
            }
            Tok::Punct(';') => path_attr = None,
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// `# [ path = "…" ]`
fn is_path_attr(t: &[Token]) -> bool {
    t.len() >= 6
        && t[1].tok == Tok::Punct('[')
        && t[2].tok == Tok::Ident("path".into())
        && t[3].tok == Tok::Punct('=')
        && matches!(t[4].tok, Tok::Str(_))
        && t[5].tok == Tok::Punct(']')
}

/// The full paths a path or `use` tree starting at `toks[i]` names under `prefix`, and the
/// index after it.
fn use_tree(toks: &[Token], mut i: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut cur = prefix;
    let mut out = Vec::new();
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(s)) if s == "self" => {
                i += 1;
            }
            Some(Tok::Ident(s)) if s != "as" => {
                cur.push(s.clone());
                i += 1;
                if matches!(toks.get(i).map(|t| &t.tok), Some(Tok::PathSep)) {
                    i += 1;
                    continue;
                }
                out.push(cur);
                return (out, i);
            }
            Some(Tok::Punct('*')) => {
                out.push(cur);
                return (out, i + 1);
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.tok) {
                        None => return (out, i),
                        Some(Tok::Punct('}')) => return (out, i + 1),
                        Some(Tok::Punct(',')) => i += 1,
                        Some(Tok::Ident(s)) if s == "as" => i += 2,
                        _ => {
                            let (sub, next) = use_tree(toks, i, cur.clone());
                            out.extend(sub);
                            i = next.max(i + 1);
                        }
                    }
                }
            }
            _ => {
                out.push(cur);
                return (out, i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(src: &str) -> Vec<String> {
        let toks = lex(src);
        let (p, _) = use_tree(&toks, 0, vec!["crate".into()]);
        p.into_iter().map(|p| p.join("::")).collect()
    }

    #[test]
    fn use_groups_expand_to_every_leaf() {
        assert_eq!(
            paths("a::{b::{c, d as e}, self, f::*};"),
            [
                "crate::a::b::c",
                "crate::a::b::d",
                "crate::a",
                "crate::a::f"
            ]
        );
    }

    #[test]
    fn expression_paths_stop_at_the_first_non_segment() {
        assert_eq!(paths("a::B::<T>::new()"), ["crate::a::B"]);
    }
}
