//! What templates compute with: Go's values as far as templates see them (nil, bool, int, float64, string,
//! slices, maps) and caller-defined objects with fields and methods, with Go's truthiness (their printing is
//! Go's `fmt`, in `gofmt.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A value inside a template.
#[derive(Clone)]
pub enum Value {
    /// Go's untyped nil, and a missing map key (printed `<no value>` by an action).
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    /// Text already safe for HTML (`safeHtml`): printed as is where output is HTML-escaped.
    Html(String),
    List(Arc<Vec<Value>>),
    /// A map with string keys, ranged over in key order as Go does.
    Map(Arc<BTreeMap<String, Value>>),
    Object(Arc<dyn Object>),
}

/// A caller-defined value with fields and methods (Go's structs and named types with methods).
pub trait Object: Send + Sync {
    /// Go's type name, used in error messages.
    fn type_name(&self) -> &str;

    /// The field or map key `name`; `None` when there is none.
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }

    /// Calls the method `name`; `None` when there is no such method. A method is looked up before a field,
    /// as Go does.
    fn method(&self, _name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        None
    }

    /// The elements, when the object is a Go slice (ranged over, `len`, `index`).
    fn list(&self) -> Option<&[Value]> {
        None
    }

    /// The entries, when the object is a Go map (ranged over in key order, `len`, `index`).
    fn map(&self) -> Option<&BTreeMap<String, Value>> {
        None
    }

    /// How `fmt` prints it (`%v`).
    fn display(&self, out: &mut String);
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("Nil"),
            Value::Bool(value) => write!(f, "Bool({value})"),
            Value::Int(value) => write!(f, "Int({value})"),
            Value::Float(value) => write!(f, "Float({value})"),
            Value::String(text) => write!(f, "String({text:?})"),
            Value::Html(text) => write!(f, "Html({text:?})"),
            Value::List(items) => f.debug_list().entries(items.iter()).finish(),
            Value::Map(map) => f.debug_map().entries(map.iter()).finish(),
            Value::Object(object) => write!(f, "Object({})", object.type_name()),
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::String(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::String(text)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Float(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl Value {
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }

    /// A `map[string]string`.
    pub fn string_map<'a>(entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
        Value::Map(Arc::new(
            entries
                .into_iter()
                .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                .collect(),
        ))
    }

    pub fn object(object: impl Object + 'static) -> Value {
        Value::Object(Arc::new(object))
    }

    /// Go's type name, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "nil".to_owned(),
            Value::Bool(_) => "bool".to_owned(),
            Value::Int(_) => "int".to_owned(),
            Value::Float(_) => "float64".to_owned(),
            Value::String(_) => "string".to_owned(),
            Value::Html(_) => "template.HTML".to_owned(),
            Value::List(_) => "[]interface {}".to_owned(),
            Value::Map(_) => "map[string]string".to_owned(),
            Value::Object(object) => object.type_name().to_owned(),
        }
    }

    /// The text of a string (or safe HTML).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) | Value::Html(text) => Some(text),
            _ => None,
        }
    }

    /// The elements of a slice, plain or an object's.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            Value::Object(object) => object.list(),
            _ => None,
        }
    }

    /// The entries of a map, plain or an object's.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(map) => Some(map),
            Value::Object(object) => object.map(),
            _ => None,
        }
    }

    /// Go's truth (`if`, `with`, `and`, `or`, `not`): false, 0, nil and empty strings, slices and maps are
    /// false; structs are always true.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(value) => *value,
            Value::Int(value) => *value != 0,
            Value::Float(value) => *value != 0.0,
            Value::String(text) | Value::Html(text) => !text.is_empty(),
            Value::List(items) => !items.is_empty(),
            Value::Map(map) => !map.is_empty(),
            Value::Object(object) => match (object.list(), object.map()) {
                (Some(items), _) => !items.is_empty(),
                (None, Some(map)) => !map.is_empty(),
                (None, None) => true,
            },
        }
    }
}
