//! CEL types of the variables a ValidatingAdmissionPolicy sees, derived from the OpenAPI v3
//! schema of the matched kind as Kubernetes' CEL environment derives them (integer → int,
//! string with format date-time → timestamp, int-or-string → dyn, …). Object fields are
//! resolved lazily, so recursive schemas (a CRD's JSONSchemaProps) cost nothing up front.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

/// A CEL type, as far as the checker tells types apart.
#[derive(Debug, Clone)]
pub enum CelType {
    /// Anything: never the cause of a type error.
    Dyn,
    /// `null_type`.
    Null,
    /// `bool`.
    Bool,
    /// `int`.
    Int,
    /// `uint`.
    Uint,
    /// `double`.
    Double,
    /// `string`.
    String,
    /// `bytes`.
    Bytes,
    /// `google.protobuf.Timestamp`.
    Timestamp,
    /// `google.protobuf.Duration`.
    Duration,
    /// `list(T)`.
    List(Box<CelType>),
    /// `map(K, V)`.
    Map(Box<CelType>, Box<CelType>),
    /// An object with the fields its schema declares.
    Object(ObjectType),
}

impl fmt::Display for CelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CelType::Dyn => f.write_str("dyn"),
            CelType::Null => f.write_str("null_type"),
            CelType::Bool => f.write_str("bool"),
            CelType::Int => f.write_str("int"),
            CelType::Uint => f.write_str("uint"),
            CelType::Double => f.write_str("double"),
            CelType::String => f.write_str("string"),
            CelType::Bytes => f.write_str("bytes"),
            CelType::Timestamp => f.write_str("google.protobuf.Timestamp"),
            CelType::Duration => f.write_str("google.protobuf.Duration"),
            CelType::List(e) => write!(f, "list({e})"),
            CelType::Map(k, v) => write!(f, "map({k}, {v})"),
            CelType::Object(_) => f.write_str("object"),
        }
    }
}

impl CelType {
    /// Whether the type is fully known without objects or `dyn` in it: only such types
    /// are named in an overload error (an error involving `dyn` cannot be proven statically).
    pub fn is_concrete(&self) -> bool {
        match self {
            CelType::Dyn | CelType::Null | CelType::Object(_) => false,
            CelType::List(e) => e.is_concrete(),
            CelType::Map(k, v) => k.is_concrete() && v.is_concrete(),
            _ => true,
        }
    }

    /// Whether a value of `self` may be used where `other` is expected (CEL's type
    /// unification, with `dyn` matching anything).
    pub fn unifies(&self, other: &CelType) -> bool {
        use CelType::*;
        match (self, other) {
            (Dyn, _) | (_, Dyn) | (Null, _) | (_, Null) => true,
            (List(a), List(b)) => a.unifies(b),
            (Map(ka, va), Map(kb, vb)) => ka.unifies(kb) && va.unifies(vb),
            (Object(_), Object(_)) => true,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }

    /// Whether this is `int`, `uint` or `double`.
    pub fn is_numeric(&self) -> bool {
        matches!(self, CelType::Int | CelType::Uint | CelType::Double)
    }
}

/// An object schema and the document its `$ref`s point into.
#[derive(Debug, Clone)]
pub struct ObjectType {
    schemas: Arc<Map<String, Value>>,
    schema: Arc<Value>,
}

/// What selecting a field of an object gives.
#[derive(Debug, Clone)]
pub enum Field {
    /// A declared field of this type.
    Known(CelType),
    /// Not declared, but the object keeps unknown fields: anything.
    Unknown,
    /// Not declared: `undefined field`.
    Undefined,
}

/// Reverses Kubernetes' escaping of property names in CEL (`__namespace__`, `a__dash__b`).
fn unescape(name: &str) -> Option<String> {
    if let Some(kw) = name.strip_prefix("__").and_then(|n| n.strip_suffix("__")) {
        if !kw.contains("__") && !kw.is_empty() {
            return Some(kw.to_string());
        }
    }
    if !name.contains("__") {
        return None;
    }
    Some(
        name.replace("__underscores__", "\u{0}")
            .replace("__dot__", ".")
            .replace("__dash__", "-")
            .replace("__slash__", "/")
            .replace('\u{0}', "__"),
    )
}

impl ObjectType {
    /// The root type of a resource: `schema` is the kind's entry of `schemas` (the OpenAPI
    /// v3 document's `components.schemas`).
    pub fn new(schemas: Arc<Map<String, Value>>, schema: Value) -> ObjectType {
        ObjectType {
            schemas,
            schema: Arc::new(schema),
        }
    }

    /// The type of field `name`.
    pub fn field(&self, name: &str) -> Field {
        let props = self.schema.get("properties").and_then(Value::as_object);
        let prop = props.and_then(|p| {
            p.get(name)
                .or_else(|| unescape(name).and_then(|n| p.get(&n)))
        });
        match prop {
            Some(s) => Field::Known(type_of(&self.schemas, s, 0)),
            None if keeps_unknown_fields(&self.schemas, &self.schema) => Field::Unknown,
            None => Field::Undefined,
        }
    }
}

/// The schema `s` with a `$ref` (direct or as the single `allOf`) followed.
fn resolve<'a>(schemas: &'a Map<String, Value>, s: &'a Value) -> &'a Value {
    let mut s = s;
    for _ in 0..16 {
        let target = s.get("$ref").and_then(Value::as_str).or_else(|| {
            match s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                Some([one]) => one.get("$ref").and_then(Value::as_str),
                _ => None,
            }
        });
        let Some(next) = target
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .and_then(|name| schemas.get(name))
        else {
            return s;
        };
        s = next;
    }
    s
}

fn keeps_unknown_fields(schemas: &Map<String, Value>, s: &Value) -> bool {
    let s = resolve(schemas, s);
    s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || s.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true))
}

/// The CEL type of schema `s` (`depth` bounds `$ref` chains through arrays and maps).
pub fn type_of(schemas: &Arc<Map<String, Value>>, s: &Value, depth: usize) -> CelType {
    if depth > 32 {
        return CelType::Dyn;
    }
    let s = resolve(schemas, s);
    if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return CelType::Dyn;
    }
    let ty = s.get("type").and_then(Value::as_str);
    let has_props = s
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    match ty {
        Some("boolean") => CelType::Bool,
        Some("integer") => CelType::Int,
        Some("number") => CelType::Double,
        Some("string") => match s.get("format").and_then(Value::as_str) {
            Some("byte") => CelType::Bytes,
            Some("date-time" | "date") => CelType::Timestamp,
            Some("duration") => CelType::Duration,
            _ => CelType::String,
        },
        Some("array") => CelType::List(Box::new(
            s.get("items")
                .map(|i| type_of(schemas, i, depth + 1))
                .unwrap_or(CelType::Dyn),
        )),
        Some("object") | None if has_props => {
            CelType::Object(ObjectType::new(schemas.clone(), s.clone()))
        }
        Some("object") => match s.get("additionalProperties") {
            Some(v @ Value::Object(_)) => CelType::Map(
                Box::new(CelType::String),
                Box::new(type_of(schemas, v, depth + 1)),
            ),
            _ => CelType::Dyn,
        },
        _ => CelType::Dyn,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A slice of Deployment's OpenAPI v3 schema as the apiserver serves it.
    pub(crate) fn deployment() -> ObjectType {
        let doc = json!({
            "io.k8s.api.apps.v1.Deployment": {"type": "object", "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "default": {}},
                "spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}], "default": {}}}},
            "io.k8s.api.apps.v1.DeploymentSpec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "format": "int32"},
                "paused": {"type": "boolean"},
                "strategy": {"type": "object", "properties": {"rollingUpdate": {"type": "object", "properties": {
                    "maxSurge": {"x-kubernetes-int-or-string": true}}}}},
                "template": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "containers": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "image": {"type": "string"}}}}}}}}}},
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {
                "name": {"type": "string"}, "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
                "creationTimestamp": {"type": "string", "format": "date-time"}}}
        });
        let schemas = Arc::new(doc.as_object().unwrap().clone());
        let root = schemas["io.k8s.api.apps.v1.Deployment"].clone();
        ObjectType::new(schemas, root)
    }

    fn known(f: Field) -> CelType {
        match f {
            Field::Known(t) => t,
            other => panic!("{other:?}"),
        }
    }

    fn object(t: CelType) -> ObjectType {
        match t {
            CelType::Object(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fields_follow_refs_and_formats() {
        let d = deployment();
        let spec = object(known(d.field("spec")));
        assert!(matches!(known(spec.field("replicas")), CelType::Int));
        assert!(matches!(known(spec.field("paused")), CelType::Bool));
        assert!(matches!(spec.field("maxRetries"), Field::Undefined));
        let meta = object(known(d.field("metadata")));
        assert_eq!(
            known(meta.field("labels")).to_string(),
            "map(string, string)"
        );
        assert_eq!(
            known(meta.field("creationTimestamp")).to_string(),
            "google.protobuf.Timestamp"
        );
        // `namespace` is a CEL reserved word, accessed escaped.
        assert!(matches!(
            known(meta.field("__namespace__")),
            CelType::String
        ));
        let template = object(known(spec.field("template")));
        let pod = object(known(template.field("spec")));
        assert!(matches!(known(pod.field("containers")), CelType::List(_)));
    }

    #[test]
    fn int_or_string_and_preserved_fields_are_dyn() {
        let d = deployment();
        let spec = object(known(d.field("spec")));
        let strategy = object(known(spec.field("strategy")));
        let ru = object(known(strategy.field("rollingUpdate")));
        assert!(matches!(known(ru.field("maxSurge")), CelType::Dyn));
        let open = ObjectType::new(
            Arc::new(Map::new()),
            json!({"type": "object", "properties": {"a": {"type": "string"}},
                "x-kubernetes-preserve-unknown-fields": true}),
        );
        assert!(matches!(open.field("b"), Field::Unknown));
    }

    #[test]
    fn unification_treats_dyn_as_a_wildcard() {
        let list_int = CelType::List(Box::new(CelType::Int));
        assert!(list_int.unifies(&CelType::List(Box::new(CelType::Dyn))));
        assert!(!list_int.unifies(&CelType::List(Box::new(CelType::String))));
        assert!(!CelType::Int.unifies(&CelType::String));
        assert!(list_int.is_concrete());
        assert!(!CelType::List(Box::new(CelType::Dyn)).is_concrete());
    }
}
