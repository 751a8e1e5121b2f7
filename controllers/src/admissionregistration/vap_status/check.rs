//! A conservative CEL type checker: it reports what cel-go's checker reports for the
//! mistakes a policy author makes most (a field the schema does not declare, an operator
//! applied to operands of the wrong types), with cel-go's messages and source positions,
//! and reports nothing it cannot prove: anything involving `dyn` (an int-or-string field,
//! `request`, `params`, a function it does not model) type-checks.

use std::collections::HashMap;

use cel::common::ast::{
    operators as op, CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue,
    SourceInfo,
};

use super::types::{CelType, Field};

/// One type error: where (byte offset into the expression) and cel-go's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Byte offset of the offending node.
    pub offset: usize,
    /// The message, e.g. `undefined field 'maxRetries'`.
    pub message: String,
}

/// The variables an expression sees (`object`, `oldObject`, …) and their types.
pub type Variables = HashMap<String, CelType>;

/// Type-checks `source` against `vars`. An expression that does not parse yields no issues:
/// the apiserver has already accepted its syntax (and reports its own errors).
pub fn check(source: &str, vars: &Variables) -> Vec<Issue> {
    let parsed = cel::parser::Parser::new()
        .enable_optional_syntax(true)
        .parse_with_source_info(source);
    let Ok((expr, info)) = parsed else {
        return Vec::new();
    };
    let mut checker = Checker {
        info: &info,
        issues: Vec::new(),
        scopes: vec![vars.clone()],
    };
    checker.type_of(&expr);
    let mut issues = checker.issues;
    issues.sort_by_key(|i| i.offset);
    issues
}

/// Formats `issues` of `source` as cel-go's `Issues.String()`: one
/// `ERROR: <input>:line:col: message` per issue with the source line and a caret.
pub fn display(source: &str, issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| {
            let before = &source[..i.offset.min(source.len())];
            let line_no = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |p| p + 1);
            let column = source[line_start..i.offset.min(source.len())]
                .chars()
                .count();
            let line = source[line_start..].lines().next().unwrap_or_default();
            let mut out = format!("ERROR: <input>:{line_no}:{}: {}", column + 1, i.message);
            if line.chars().count() <= 100 {
                let line = line.replace('\t', " ");
                out += &format!("\n | {line}\n | {}^", ".".repeat(column));
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Checker<'a> {
    info: &'a SourceInfo,
    issues: Vec<Issue>,
    scopes: Vec<Variables>,
}

impl Checker<'_> {
    fn report(&mut self, id: u64, message: String) {
        let offset = self
            .info
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        self.issues.push(Issue { offset, message });
    }

    fn lookup(&self, name: &str) -> CelType {
        self.scopes
            .iter()
            .rev()
            .find_map(|s| s.get(name).cloned())
            .unwrap_or(CelType::Dyn)
    }

    fn type_of(&mut self, e: &IdedExpr) -> CelType {
        match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => CelType::Bool,
                LiteralValue::Bytes(_) => CelType::Bytes,
                LiteralValue::Double(_) => CelType::Double,
                LiteralValue::Int(_) => CelType::Int,
                LiteralValue::Null => CelType::Null,
                LiteralValue::String(_) => CelType::String,
                LiteralValue::UInt(_) => CelType::Uint,
            },
            Expr::Ident(name) => self.lookup(name),
            Expr::Select(s) => {
                let operand = self.type_of(&s.operand);
                let field = self.select(e.id, &operand, &s.field);
                if s.test {
                    CelType::Bool
                } else {
                    field
                }
            }
            Expr::List(l) => {
                let elems: Vec<CelType> = l.elements.iter().map(|x| self.type_of(x)).collect();
                CelType::List(Box::new(join(&elems)))
            }
            Expr::Map(m) => {
                let (mut keys, mut values) = (Vec::new(), Vec::new());
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        keys.push(self.type_of(&me.key));
                        values.push(self.type_of(&me.value));
                    }
                }
                CelType::Map(Box::new(join(&keys)), Box::new(join(&values)))
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.type_of(&f.value);
                    }
                }
                CelType::Dyn
            }
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::Call(call) => self.call(e.id, call),
            Expr::Unspecified => CelType::Dyn,
        }
    }

    fn select(&mut self, id: u64, operand: &CelType, field: &str) -> CelType {
        match operand {
            CelType::Object(o) => match o.field(field) {
                Field::Known(t) => t,
                Field::Unknown => CelType::Dyn,
                Field::Undefined => {
                    self.report(id, format!("undefined field '{field}'"));
                    CelType::Dyn
                }
            },
            CelType::Map(_, v) => (**v).clone(),
            t if t.is_concrete() && !matches!(t, CelType::List(_)) => {
                self.report(id, format!("type '{t}' does not support field selection"));
                CelType::Dyn
            }
            _ => CelType::Dyn,
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> CelType {
        let range = self.type_of(&c.iter_range);
        let (first, second) = match &range {
            CelType::List(e) => (
                if c.iter_var2.is_some() {
                    CelType::Int
                } else {
                    (**e).clone()
                },
                (**e).clone(),
            ),
            CelType::Map(k, v) => ((**k).clone(), (**v).clone()),
            _ => (CelType::Dyn, CelType::Dyn),
        };
        let accu = self.type_of(&c.accu_init);
        let mut scope = Variables::new();
        scope.insert(c.iter_var.clone(), first);
        if let Some(v2) = &c.iter_var2 {
            scope.insert(v2.clone(), second);
        }
        scope.insert(c.accu_var.clone(), widen(&accu));
        self.scopes.push(scope);
        self.type_of(&c.loop_cond);
        self.type_of(&c.loop_step);
        self.scopes.pop();
        let mut result_scope = Variables::new();
        result_scope.insert(c.accu_var.clone(), widen(&accu));
        self.scopes.push(result_scope);
        let result = self.type_of(&c.result);
        self.scopes.pop();
        result
    }

    fn call(&mut self, id: u64, call: &CallExpr) -> CelType {
        let target = call.target.as_ref().map(|t| self.type_of(t));
        let args: Vec<CelType> = call.args.iter().map(|a| self.type_of(a)).collect();
        let name = call.func_name.as_str();
        if let Some(target) = target {
            return method(name, &target);
        }
        match operator(name, &args) {
            Resolution::Type(t) => t,
            Resolution::NoOverload => {
                let applied = args
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                self.report(
                    id,
                    format!("found no matching overload for '{name}' applied to '({applied})'"),
                );
                CelType::Dyn
            }
        }
    }
}

/// The element type of a list or map literal: the common type, or `dyn`.
fn join(types: &[CelType]) -> CelType {
    match types.split_first() {
        Some((first, rest))
            if first.is_concrete()
                && rest
                    .iter()
                    .all(|t| t.is_concrete() && t.to_string() == first.to_string()) =>
        {
            first.clone()
        }
        _ => CelType::Dyn,
    }
}

/// An accumulator starting as an empty list or map may grow with any element type.
fn widen(t: &CelType) -> CelType {
    match t {
        CelType::List(_) => CelType::List(Box::new(CelType::Dyn)),
        CelType::Map(_, _) => CelType::Map(Box::new(CelType::Dyn), Box::new(CelType::Dyn)),
        other => other.clone(),
    }
}

enum Resolution {
    Type(CelType),
    NoOverload,
}

/// Result types of the member functions the checker knows; others are `dyn`.
fn method(name: &str, _target: &CelType) -> CelType {
    match name {
        "size" => CelType::Int,
        "contains" | "startsWith" | "endsWith" | "matches" | "isSorted" => CelType::Bool,
        "lowerAscii" | "upperAscii" | "trim" | "replace" | "join" => CelType::String,
        _ => CelType::Dyn,
    }
}

/// Resolves operator or global function `name` over `args`: a result type, or no overload
/// when every argument is concrete and none of the operator's overloads takes them.
fn operator(name: &str, args: &[CelType]) -> Resolution {
    use CelType::*;
    let all_concrete = args.iter().all(CelType::is_concrete);
    let fail = || {
        if all_concrete {
            Resolution::NoOverload
        } else {
            Resolution::Type(Dyn)
        }
    };
    let ok = Resolution::Type;
    match (name, args) {
        (op::LOGICAL_AND | op::LOGICAL_OR, [a, b]) => {
            if [a, b].iter().all(|t| t.unifies(&Bool)) {
                ok(Bool)
            } else {
                fail()
            }
        }
        (op::LOGICAL_NOT, [a]) => {
            if a.unifies(&Bool) {
                ok(Bool)
            } else {
                fail()
            }
        }
        (op::NOT_STRICTLY_FALSE, _) => ok(Bool),
        (op::NEGATE, [a]) => match a {
            Int | Double => ok(a.clone()),
            _ => fail(),
        },
        (op::EQUALS | op::NOT_EQUALS, [a, b]) => {
            if a.unifies(b) || (a.is_numeric() && b.is_numeric()) {
                ok(Bool)
            } else {
                fail()
            }
        }
        (op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS, [a, b]) => {
            let comparable = (a.is_numeric() && b.is_numeric())
                || matches!(
                    (a, b),
                    (String, String)
                        | (Bytes, Bytes)
                        | (Bool, Bool)
                        | (Timestamp, Timestamp)
                        | (Duration, Duration)
                );
            if comparable {
                ok(Bool)
            } else {
                fail()
            }
        }
        (op::ADD, [a, b]) => match (a, b) {
            (Int, Int) | (Uint, Uint) | (Double, Double) | (String, String) | (Bytes, Bytes) => {
                ok(a.clone())
            }
            (Duration, Duration) => ok(Duration),
            (Timestamp, Duration) | (Duration, Timestamp) => ok(Timestamp),
            (List(x), List(y)) if x.unifies(y) => ok(if x.is_concrete() {
                a.clone()
            } else {
                b.clone()
            }),
            _ => fail(),
        },
        (op::SUBSTRACT, [a, b]) => match (a, b) {
            (Int, Int) | (Uint, Uint) | (Double, Double) => ok(a.clone()),
            (Timestamp, Timestamp) | (Duration, Duration) => ok(Duration),
            (Timestamp, Duration) => ok(Timestamp),
            _ => fail(),
        },
        (op::MULTIPLY | op::DIVIDE, [a, b]) => match (a, b) {
            (Int, Int) | (Uint, Uint) | (Double, Double) => ok(a.clone()),
            _ => fail(),
        },
        (op::MODULO, [a, b]) => match (a, b) {
            (Int, Int) | (Uint, Uint) => ok(a.clone()),
            _ => fail(),
        },
        (op::CONDITIONAL, [c, a, b]) => {
            if !c.unifies(&Bool) || !a.unifies(b) {
                fail()
            } else if a.is_concrete() {
                ok(a.clone())
            } else {
                ok(Dyn)
            }
        }
        (op::INDEX, [container, index]) => match container {
            List(e) => match index {
                Int | Uint | Dyn => ok((**e).clone()),
                _ => fail(),
            },
            Map(k, v) => {
                if index.unifies(k) {
                    ok((**v).clone())
                } else {
                    fail()
                }
            }
            Dyn | Object(_) => ok(Dyn),
            _ => fail(),
        },
        (op::IN, [elem, container]) => match container {
            List(e) | Map(e, _) => {
                if elem.unifies(e) {
                    ok(Bool)
                } else {
                    fail()
                }
            }
            Dyn => ok(Bool),
            _ => fail(),
        },
        ("size", [_]) => ok(Int),
        ("int", [_]) => ok(Int),
        ("uint", [_]) => ok(Uint),
        ("double", [_]) => ok(Double),
        ("string", [_]) => ok(String),
        ("bytes", [_]) => ok(Bytes),
        ("bool", [_]) => ok(Bool),
        ("timestamp", [_]) => ok(Timestamp),
        ("duration", [_]) => ok(Duration),
        _ => ok(Dyn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admissionregistration::vap_status::types::tests::deployment;

    fn vars() -> Variables {
        let mut v = Variables::new();
        v.insert("object".into(), CelType::Object(deployment()));
        v.insert("oldObject".into(), CelType::Object(deployment()));
        v
    }

    fn messages(src: &str) -> Vec<String> {
        check(src, &vars()).into_iter().map(|i| i.message).collect()
    }

    #[test]
    fn well_typed_expressions_have_no_issues() {
        for src in [
            "object.spec.replicas > 1",
            "object.spec.replicas > 1.5",
            "has(object.spec.paused) && object.spec.paused",
            "object.metadata.name.startsWith('web') || object.metadata.__namespace__ == 'x'",
            "object.spec.template.spec.containers.all(c, c.image.contains(':'))",
            "object.spec.template.spec.containers.map(c, c.name).size() < 5",
            "'app' in object.metadata.labels && object.metadata.labels['app'] != ''",
            "object.spec.strategy.rollingUpdate.maxSurge == '25%'",
            "request.userInfo.username == 'admin' || params.x > 3",
            "object.metadata.creationTimestamp < timestamp('2030-01-01T00:00:00Z')",
            "object.spec.replicas + 1 <= 10 ? true : false",
            "'wants replicas > 1, got ' + string(object.spec.replicas)",
            "object.?spec.replicas.orValue(1) > 0",
            "this is not cel",
        ] {
            assert_eq!(messages(src), Vec::<String>::new(), "{src}");
        }
    }

    #[test]
    fn operators_on_wrong_types_are_reported_as_cel_go_does() {
        assert_eq!(
            messages("object.spec.replicas > '1'"),
            ["found no matching overload for '_>_' applied to '(int, string)'"]
        );
        assert_eq!(
            messages("'wants replicas > 1, got ' + object.spec.replicas"),
            ["found no matching overload for '_+_' applied to '(string, int)'"]
        );
        assert_eq!(
            messages("object.spec.paused && 1"),
            ["found no matching overload for '_&&_' applied to '(bool, int)'"]
        );
        assert_eq!(
            messages("object.metadata.labels['a'] == 1"),
            ["found no matching overload for '_==_' applied to '(string, int)'"]
        );
    }

    #[test]
    fn undefined_fields_are_reported() {
        assert_eq!(
            messages("object.spec.maxRetries < 10"),
            ["undefined field 'maxRetries'"]
        );
        assert_eq!(
            messages("object.spec.template.spec.containers.exists(c, c.cpu > 1)"),
            ["undefined field 'cpu'"]
        );
        assert_eq!(
            messages("has(oldObject.spec.foo)"),
            ["undefined field 'foo'"]
        );
    }

    #[test]
    fn display_points_at_the_operator_as_cel_go() {
        let src = "object.spec.replicas > '1'";
        let issues = check(src, &vars());
        assert_eq!(
            display(src, &issues),
            "ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'\n | object.spec.replicas > '1'\n | .....................^"
        );
        let src = "object.spec.maxRetries < 10";
        assert_eq!(
            display(src, &check(src, &vars())),
            "ERROR: <input>:1:12: undefined field 'maxRetries'\n | object.spec.maxRetries < 10\n | ...........^"
        );
    }
}
