//! The PromQL subset dbwatch evaluates: parsed by `promql-parser`, then compiled into this smaller tree.
//!
//! Compiling is where unsupported constructs are refused, naming the construct, so that a rule never loads
//! with a meaning the evaluator does not implement. The semantics followed are Prometheus 2.x's (the version
//! `promtool` in the CI image is 2.42): closed range intervals, a 5 minute lookback, staleness markers.
//!
//! Supported: number and string literals; instant and range vector selectors with `=`, `!=`, `=~`, `!~`
//! matchers, `offset` (negative too) and the `@` modifier (a time, `start()`, `end()`); subqueries
//! (`expr[range:step]`, with `offset` and `@`); unary minus; arithmetic, comparison (with or without
//! `bool`), `atan2` and set operators with `on`/`ignoring` and `group_left`/`group_right`; the aggregations
//! `sum`, `avg`, `count`, `min`, `max`, `group`, `stddev`, `stdvar`, `topk`, `bottomk`, `quantile` and
//! `count_values` with `by`/`without`; the functions listed in [`Func`], `histogram_quantile` over classic
//! `_bucket` series included.
//!
//! Refused: native histograms (the `histogram_*` functions other than `histogram_quantile`), `or` inside
//! label matchers, `fill` modifiers, `limitk`, `limit_ratio` and the functions Prometheus 2.42 does not
//! have.

use std::fmt;
use std::sync::Arc;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_DIV, T_EQLC, T_GROUP, T_GTE,
    T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MAX, T_MIN, T_MOD, T_MUL, T_NEQ, T_POW,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUB, T_SUM, T_TOPK,
};
use promql_parser::parser::{
    self as ast, AtModifier, LabelModifier, Offset, VectorMatchCardinality,
};

use super::labels::METRIC_NAME;

/// How far back an instant selector looks for a sample (Prometheus' default `--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Why an expression does not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// Not PromQL at all.
    Parse(String),
    /// Valid PromQL that dbwatch's evaluator does not implement.
    Unsupported { construct: String, near: String },
    /// Valid PromQL whose result cannot be a rule's: a range vector or a string.
    ResultType(ValueType),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Parse(message) => write!(f, "could not parse expression: {}", message.trim()),
            CompileError::Unsupported { construct, near } => {
                write!(f, "unsupported PromQL construct: {construct} (in `{near}`)")
            }
            CompileError::ResultType(kind) => write!(
                f,
                "a rule's expression must give an instant vector or a scalar, this one gives a {kind}"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            ValueType::String => "string",
        })
    }
}

#[derive(Debug)]
pub enum Expr {
    Number(f64),
    String(String),
    /// An instant vector selector.
    Vector(Selector),
    /// A range vector selector and its range in milliseconds; only ever a function argument.
    Matrix(Selector, i64),
    Negate(Box<Expr>),
    Binary(Box<Binary>),
    Aggregate(Box<Aggregate>),
    Call(Box<Call>),
    /// `expr[range:step]`: a range vector; only ever a function argument.
    Subquery(Box<Subquery>),
}

/// A subquery: the inner expression evaluated at every step of the range.
#[derive(Debug)]
pub struct Subquery {
    pub expr: Expr,
    pub range_ms: i64,
    /// `None`: the default step (see [`DEFAULT_SUBQUERY_STEP_MS`]).
    pub step_ms: Option<i64>,
    pub offset_ms: i64,
    pub at: Option<At>,
    /// As written, for messages and keys.
    pub text: String,
}

/// The step of a subquery written without one: Prometheus uses its global evaluation interval, 1m by
/// default (and `promtool`'s test files assume it).
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// The `@` modifier of a selector or a subquery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Unix milliseconds.
    Time(i64),
    /// `start()` and `end()`: the query's own time (a rule's evaluation time, an instant query's time).
    QueryTime,
}

impl Expr {
    /// Adds the metric names this expression reads to `reads`, or sets it to `None` when it can read any.
    fn names_read(&self, reads: &mut Option<Vec<Arc<str>>>) {
        match self {
            Expr::Number(_) | Expr::String(_) => {}
            Expr::Vector(selector) | Expr::Matrix(selector, _) => {
                match (&selector.name, reads.as_mut()) {
                    (Some(name), Some(names)) => names.push(Arc::clone(name)),
                    (None, _) => *reads = None,
                    (Some(_), None) => {}
                }
            }
            Expr::Negate(inner) => inner.names_read(reads),
            Expr::Binary(binary) => {
                binary.lhs.names_read(reads);
                binary.rhs.names_read(reads);
            }
            Expr::Aggregate(aggregate) => {
                aggregate.expr.names_read(reads);
                if let Some(param) = &aggregate.param {
                    param.names_read(reads);
                }
            }
            Expr::Call(call) => {
                for arg in &call.args {
                    arg.names_read(reads);
                }
            }
            Expr::Subquery(subquery) => subquery.expr.names_read(reads),
        }
    }

    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::Number(_) => ValueType::Scalar,
            Expr::String(_) => ValueType::String,
            Expr::Vector(_) => ValueType::Vector,
            Expr::Matrix(..) => ValueType::Matrix,
            Expr::Negate(inner) => inner.value_type(),
            Expr::Binary(binary) => {
                if binary.lhs.value_type() == ValueType::Scalar
                    && binary.rhs.value_type() == ValueType::Scalar
                {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Aggregate(_) => ValueType::Vector,
            Expr::Call(call) => call.func.return_type(),
            Expr::Subquery(_) => ValueType::Matrix,
        }
    }

    /// Visits every selector with how far back before the evaluation time it reads besides its offset: its
    /// range (`None` for an instant selector). A selector inside a subquery reads its own range (or the
    /// lookback) further back than the subquery's range and offset, which is what it is visited with.
    /// How far back before the evaluation time the expression reads: the longest range (the 5 minute lookback
    /// for an instant selector) plus offset, subqueries' ranges included. The history must hold this much.
    pub fn reach_ms(&self) -> i64 {
        let mut longest = 0i64;
        self.visit_selectors(&mut |selector, range| {
            let needed = selector
                .offset_ms
                .saturating_add(range.unwrap_or(LOOKBACK_MS));
            longest = longest.max(needed);
        });
        longest
    }

    pub fn visit_selectors<'a>(&'a self, visit: &mut impl FnMut(&'a Selector, Option<i64>)) {
        self.visit_within(visit, 0);
    }

    fn visit_within<'a>(&'a self, visit: &mut impl FnMut(&'a Selector, Option<i64>), extra: i64) {
        let mut selector = |selector: &'a Selector, range: Option<i64>| {
            if extra == 0 {
                visit(selector, range);
            } else {
                visit(
                    selector,
                    Some(range.unwrap_or(LOOKBACK_MS).saturating_add(extra)),
                );
            }
        };
        match self {
            Expr::Number(_) | Expr::String(_) => {}
            Expr::Vector(vector) => selector(vector, None),
            Expr::Matrix(matrix, range) => selector(matrix, Some(*range)),
            Expr::Negate(inner) => inner.visit_within(visit, extra),
            Expr::Binary(binary) => {
                binary.lhs.visit_within(visit, extra);
                binary.rhs.visit_within(visit, extra);
            }
            Expr::Aggregate(aggregate) => {
                if let Some(param) = &aggregate.param {
                    param.visit_within(visit, extra);
                }
                aggregate.expr.visit_within(visit, extra);
            }
            Expr::Call(call) => {
                for arg in &call.args {
                    arg.visit_within(visit, extra);
                }
            }
            Expr::Subquery(subquery) => {
                let reach = extra
                    .saturating_add(subquery.range_ms)
                    .saturating_add(subquery.offset_ms.max(0));
                subquery.expr.visit_within(visit, reach);
            }
        }
    }
}

/// The series a selector picks: an exact metric name when one is known, and the other matchers.
#[derive(Debug)]
pub struct Selector {
    pub name: Option<Arc<str>>,
    /// Every matcher besides the exact name, in the order written.
    pub matchers: Vec<Matcher>,
    /// Negative for a negative offset (a sample after the evaluation time).
    pub offset_ms: i64,
    pub at: Option<At>,
    /// As written, for messages.
    pub text: String,
}

impl Selector {
    /// True when the label set matches; `get` looks a label up, `__name__` included.
    pub fn matches<'a>(&self, name: Option<&str>, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        if let Some(wanted) = &self.name {
            if name != Some(wanted.as_ref()) {
                return false;
            }
        }
        self.matchers.iter().all(|matcher| {
            let value = if matcher.name == METRIC_NAME {
                name.unwrap_or("")
            } else {
                get(&matcher.name).unwrap_or("")
            };
            matcher.is_match(value)
        })
    }
}

#[derive(Debug)]
pub struct Binary {
    pub op: BinOp,
    pub lhs: Expr,
    pub rhs: Expr,
    pub matching: Matching,
    pub return_bool: bool,
    pub shared: Shared,
}

/// What lets the rules evaluated at one instant share a subexpression's result: every expression is a pure
/// function of the history and the time, so equal text means an equal result until the history changes.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The subexpression as text (promql-parser's rendering).
    pub key: String,
    /// The metric names it reads; `None` when a selector has no exact name, so any new sample may change it.
    pub reads: Option<Vec<Arc<str>>>,
}

impl Shared {
    fn of(node: &ast::Expr, children: &[&Expr]) -> Shared {
        let mut reads = Some(Vec::new());
        for child in children {
            child.names_read(&mut reads);
        }
        if let Some(names) = &mut reads {
            names.sort();
            names.dedup();
        }
        Shared {
            key: node.to_string(),
            reads,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// Arithmetic drops the metric name; comparisons keep it (unless `bool`).
    pub fn drops_metric_name(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow | BinOp::Mod
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

#[derive(Debug, Clone)]
pub struct Matching {
    pub card: Card,
    /// `on(...)` when true, `ignoring(...)` (or nothing) when false.
    pub on: bool,
    /// The labels of `on` or `ignoring`, sorted.
    pub labels: Vec<String>,
    /// The labels of `group_left(...)`/`group_right(...)`, copied from the "one" side.
    pub include: Vec<String>,
}

#[derive(Debug)]
pub struct Aggregate {
    pub op: AggOp,
    pub expr: Expr,
    pub param: Option<Expr>,
    /// The labels of `by` or `without`, sorted.
    pub grouping: Vec<String>,
    pub without: bool,
    pub shared: Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    /// Its parameter is the string naming the output label.
    CountValues,
}

#[derive(Debug)]
pub struct Call {
    pub func: Func,
    pub args: Vec<Expr>,
    /// `label_replace`'s regular expression, anchored like Prometheus', compiled at load.
    pub regex: Option<Matcher>,
}

macro_rules! functions {
    ($($variant:ident = $name:literal : $ret:ident),* $(,)?) => {
        /// The functions dbwatch evaluates, with Prometheus 2.42's semantics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Func {
            $($variant),*
        }

        impl Func {
            /// Every function, in the table's order (the README's list is checked against it).
            pub const ALL: &'static [Func] = &[$(Func::$variant),*];

            pub fn from_name(name: &str) -> Option<Func> {
                match name {
                    $($name => Some(Func::$variant),)*
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $(Func::$variant => $name),*
                }
            }

            pub fn return_type(self) -> ValueType {
                match self {
                    $(Func::$variant => ValueType::$ret),*
                }
            }
        }
    };
}

functions! {
    Abs = "abs": Vector,
    Absent = "absent": Vector,
    AbsentOverTime = "absent_over_time": Vector,
    Acos = "acos": Vector,
    Acosh = "acosh": Vector,
    Asin = "asin": Vector,
    Asinh = "asinh": Vector,
    Atan = "atan": Vector,
    Atanh = "atanh": Vector,
    AvgOverTime = "avg_over_time": Vector,
    Ceil = "ceil": Vector,
    Changes = "changes": Vector,
    Clamp = "clamp": Vector,
    ClampMax = "clamp_max": Vector,
    ClampMin = "clamp_min": Vector,
    Cos = "cos": Vector,
    Cosh = "cosh": Vector,
    CountOverTime = "count_over_time": Vector,
    DaysInMonth = "days_in_month": Vector,
    DayOfMonth = "day_of_month": Vector,
    DayOfWeek = "day_of_week": Vector,
    DayOfYear = "day_of_year": Vector,
    Deg = "deg": Vector,
    Delta = "delta": Vector,
    Deriv = "deriv": Vector,
    Exp = "exp": Vector,
    Floor = "floor": Vector,
    HistogramQuantile = "histogram_quantile": Vector,
    HoltWinters = "holt_winters": Vector,
    Hour = "hour": Vector,
    Idelta = "idelta": Vector,
    Increase = "increase": Vector,
    Irate = "irate": Vector,
    LabelJoin = "label_join": Vector,
    LabelReplace = "label_replace": Vector,
    LastOverTime = "last_over_time": Vector,
    Ln = "ln": Vector,
    Log10 = "log10": Vector,
    Log2 = "log2": Vector,
    MaxOverTime = "max_over_time": Vector,
    MinOverTime = "min_over_time": Vector,
    Minute = "minute": Vector,
    Month = "month": Vector,
    Pi = "pi": Scalar,
    PredictLinear = "predict_linear": Vector,
    PresentOverTime = "present_over_time": Vector,
    QuantileOverTime = "quantile_over_time": Vector,
    Rad = "rad": Vector,
    Rate = "rate": Vector,
    Resets = "resets": Vector,
    Round = "round": Vector,
    Scalar = "scalar": Scalar,
    Sgn = "sgn": Vector,
    Sin = "sin": Vector,
    Sinh = "sinh": Vector,
    Sort = "sort": Vector,
    SortDesc = "sort_desc": Vector,
    Sqrt = "sqrt": Vector,
    StddevOverTime = "stddev_over_time": Vector,
    StdvarOverTime = "stdvar_over_time": Vector,
    SumOverTime = "sum_over_time": Vector,
    Tan = "tan": Vector,
    Tanh = "tanh": Vector,
    Time = "time": Scalar,
    Timestamp = "timestamp": Vector,
    Vector = "vector": Vector,
    Year = "year": Vector,
}

/// Parses and compiles a rule expression.
pub fn compile(text: &str) -> Result<Expr, CompileError> {
    let parsed = parse(text)?;
    let expr = compile_node(&parsed)?;
    match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => Ok(expr),
        other => Err(CompileError::ResultType(other)),
    }
}

/// Parses and compiles any expression, whatever its type (for `promql_expr_test`).
pub fn compile_query(text: &str) -> Result<Expr, CompileError> {
    compile_node(&parse(text)?)
}

/// The name `promql-parser` knows Prometheus 2.42's `holt_winters` by (Prometheus 3 renamed it).
const HOLT_WINTERS_RENAMED: &str = "double_exponential_smoothing";

/// Parses PromQL as Prometheus 2.42 does: `holt_winters` is handed to the parser under its later name, and
/// that later name, which 2.42 does not know, is refused.
fn parse(text: &str) -> Result<ast::Expr, CompileError> {
    let mut rewritten = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let Some(c) = rest.chars().next() else {
            break;
        };
        if matches!(c, '"' | '\'' | '`') {
            // A string literal, copied as is up to its closing quote (backslash escapes but in raw strings).
            let mut end = rest.len();
            let mut escaped = false;
            for (index, next) in rest.char_indices().skip(1) {
                if escaped {
                    escaped = false;
                } else if next == '\\' && c != '`' {
                    escaped = true;
                } else if next == c {
                    end = index + next.len_utf8();
                    break;
                }
            }
            rewritten.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            let called = rest[end..].trim_start().starts_with('(');
            if called && word == HOLT_WINTERS_RENAMED {
                return Err(unsupported(
                    format!("the function `{word}` (not in dbwatch's evaluator (Prometheus 2.42 functions only))"),
                    text,
                ));
            }
            rewritten.push_str(if called && word == "holt_winters" {
                HOLT_WINTERS_RENAMED
            } else {
                word
            });
            rest = &rest[end..];
            continue;
        }
        rewritten.push(c);
        rest = &rest[c.len_utf8()..];
    }
    promql_parser::parser::parse(&rewritten).map_err(CompileError::Parse)
}

fn unsupported(construct: impl Into<String>, near: impl fmt::Display) -> CompileError {
    let mut near = near.to_string();
    if near.len() > 120 {
        let mut cut = 117;
        while !near.is_char_boundary(cut) {
            cut -= 1;
        }
        near.truncate(cut);
        near.push_str("...");
    }
    CompileError::Unsupported {
        construct: construct.into(),
        near,
    }
}

fn compile_node(node: &ast::Expr) -> Result<Expr, CompileError> {
    match node {
        ast::Expr::Paren(paren) => compile_node(&paren.expr),
        ast::Expr::NumberLiteral(number) => Ok(Expr::Number(number.val)),
        ast::Expr::StringLiteral(string) => Ok(Expr::String(string.val.clone())),
        ast::Expr::VectorSelector(selector) => Ok(Expr::Vector(compile_selector(selector, node)?)),
        ast::Expr::MatrixSelector(matrix) => {
            let selector = compile_selector(&matrix.vs, node)?;
            let range = i64::try_from(matrix.range.as_millis()).unwrap_or(i64::MAX);
            if range <= 0 {
                return Err(unsupported("a zero range", node));
            }
            Ok(Expr::Matrix(selector, range))
        }
        ast::Expr::Subquery(subquery) => {
            let expr = compile_node(&subquery.expr)?;
            if expr.value_type() != ValueType::Vector {
                return Err(CompileError::Parse(format!(
                    "subquery is only allowed on instant vector, got {} instead",
                    expr.value_type()
                )));
            }
            let range_ms = i64::try_from(subquery.range.as_millis()).unwrap_or(i64::MAX);
            let step_ms = match subquery.step {
                Some(step) => {
                    let step = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
                    if step <= 0 {
                        return Err(unsupported("a zero subquery step", node));
                    }
                    Some(step)
                }
                None => None,
            };
            if range_ms <= 0 {
                return Err(unsupported("a zero range", node));
            }
            Ok(Expr::Subquery(Box::new(Subquery {
                expr,
                range_ms,
                step_ms,
                offset_ms: offset_ms(subquery.offset.as_ref()),
                at: subquery.at.as_ref().map(at_of),
                text: node.to_string(),
            })))
        }
        ast::Expr::Unary(unary) => Ok(Expr::Negate(Box::new(compile_node(&unary.expr)?))),
        ast::Expr::Binary(binary) => compile_binary(binary, node),
        ast::Expr::Aggregate(aggregate) => compile_aggregate(aggregate, node),
        ast::Expr::Call(call) => compile_call(call, node),
        ast::Expr::Extension(_) => Err(unsupported("extension expression", node)),
    }
}

fn compile_selector(
    selector: &ast::VectorSelector,
    node: &ast::Expr,
) -> Result<Selector, CompileError> {
    if !selector.matchers.or_matchers.is_empty() {
        return Err(unsupported("`or` inside label matchers", node));
    }
    let offset_ms = offset_ms(selector.offset.as_ref());
    let mut name: Option<Arc<str>> = selector.name.as_deref().map(Arc::from);
    let mut matchers = Vec::with_capacity(selector.matchers.matchers.len());
    for matcher in &selector.matchers.matchers {
        if matcher.name == METRIC_NAME && name.is_none() && matches!(matcher.op, MatchOp::Equal) {
            name = Some(Arc::from(matcher.value.as_str()));
            continue;
        }
        matchers.push(matcher.clone());
    }
    Ok(Selector {
        name,
        matchers,
        offset_ms,
        at: selector.at.as_ref().map(at_of),
        text: node.to_string(),
    })
}

fn offset_ms(offset: Option<&Offset>) -> i64 {
    let millis =
        |duration: &std::time::Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    match offset {
        None => 0,
        Some(Offset::Pos(duration)) => millis(duration),
        Some(Offset::Neg(duration)) => -millis(duration),
    }
}

fn at_of(at: &AtModifier) -> At {
    match at {
        AtModifier::Start | AtModifier::End => At::QueryTime,
        AtModifier::At(time) => At::Time(match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        }),
    }
}

fn compile_binary(binary: &ast::BinaryExpr, node: &ast::Expr) -> Result<Expr, CompileError> {
    let op = match binary.op.id() {
        T_ADD => BinOp::Add,
        T_SUB => BinOp::Sub,
        T_MUL => BinOp::Mul,
        T_DIV => BinOp::Div,
        T_MOD => BinOp::Mod,
        T_POW => BinOp::Pow,
        T_ATAN2 => BinOp::Atan2,
        T_EQLC => BinOp::Eq,
        T_NEQ => BinOp::Ne,
        T_GTR => BinOp::Gt,
        T_LSS => BinOp::Lt,
        T_GTE => BinOp::Ge,
        T_LTE => BinOp::Le,
        T_LAND => BinOp::And,
        T_LOR => BinOp::Or,
        T_LUNLESS => BinOp::Unless,
        _ => return Err(unsupported(format!("the operator `{}`", binary.op), node)),
    };
    let lhs = compile_node(&binary.lhs)?;
    let rhs = compile_node(&binary.rhs)?;
    let mut matching = Matching {
        card: if op.is_set() {
            Card::ManyToMany
        } else {
            Card::OneToOne
        },
        on: false,
        labels: Vec::new(),
        include: Vec::new(),
    };
    let mut return_bool = false;
    if let Some(modifier) = &binary.modifier {
        if modifier.fill_values.lhs.is_some() || modifier.fill_values.rhs.is_some() {
            return Err(unsupported("fill modifiers", node));
        }
        return_bool = modifier.return_bool;
        match &modifier.matching {
            Some(LabelModifier::Include(labels)) => {
                matching.on = true;
                matching.labels = labels.labels.clone();
            }
            Some(LabelModifier::Exclude(labels)) => matching.labels = labels.labels.clone(),
            None => {}
        }
        matching.labels.sort();
        matching.labels.dedup();
        match &modifier.card {
            VectorMatchCardinality::OneToOne => {}
            VectorMatchCardinality::ManyToMany => matching.card = Card::ManyToMany,
            VectorMatchCardinality::ManyToOne(labels) => {
                matching.card = Card::ManyToOne;
                matching.include = labels.labels.clone();
            }
            VectorMatchCardinality::OneToMany(labels) => {
                matching.card = Card::OneToMany;
                matching.include = labels.labels.clone();
            }
        }
    }
    if op.is_set() {
        matching.card = Card::ManyToMany;
    }
    if return_bool && !op.is_comparison() {
        return Err(unsupported("`bool` on a non-comparison operator", node));
    }
    if lhs.value_type() == ValueType::Scalar
        && rhs.value_type() == ValueType::Scalar
        && op.is_comparison()
        && !return_bool
    {
        return Err(CompileError::Parse(
            "comparisons between scalars must use BOOL modifier".to_owned(),
        ));
    }
    for side in [&lhs, &rhs] {
        if !matches!(side.value_type(), ValueType::Scalar | ValueType::Vector) {
            return Err(CompileError::Parse(
                "binary expression must contain only scalar and instant vector types".to_owned(),
            ));
        }
    }
    if op.is_set()
        && (lhs.value_type() != ValueType::Vector || rhs.value_type() != ValueType::Vector)
    {
        return Err(CompileError::Parse(format!(
            "set operator `{}` not allowed in binary scalar expression",
            binary.op
        )));
    }
    let shared = Shared::of(node, &[&lhs, &rhs]);
    Ok(Expr::Binary(Box::new(Binary {
        op,
        lhs,
        rhs,
        matching,
        return_bool,
        shared,
    })))
}

fn compile_aggregate(
    aggregate: &ast::AggregateExpr,
    node: &ast::Expr,
) -> Result<Expr, CompileError> {
    let op = match aggregate.op.id() {
        T_SUM => AggOp::Sum,
        T_AVG => AggOp::Avg,
        T_COUNT => AggOp::Count,
        T_MIN => AggOp::Min,
        T_MAX => AggOp::Max,
        T_GROUP => AggOp::Group,
        T_STDDEV => AggOp::Stddev,
        T_STDVAR => AggOp::Stdvar,
        T_TOPK => AggOp::Topk,
        T_BOTTOMK => AggOp::Bottomk,
        T_QUANTILE => AggOp::Quantile,
        T_COUNT_VALUES => AggOp::CountValues,
        _ => {
            return Err(unsupported(
                format!("the aggregation `{}`", aggregate.op),
                node,
            ))
        }
    };
    let expr = compile_node(&aggregate.expr)?;
    if expr.value_type() != ValueType::Vector {
        return Err(CompileError::Parse(format!(
            "expected type instant vector in aggregation expression, got {}",
            expr.value_type()
        )));
    }
    let param = match &aggregate.param {
        Some(param) => {
            let param = compile_node(param)?;
            let wanted = if op == AggOp::CountValues {
                ValueType::String
            } else {
                ValueType::Scalar
            };
            if param.value_type() != wanted {
                return Err(CompileError::Parse(format!(
                    "expected type {wanted} in aggregation parameter, got {}",
                    param.value_type()
                )));
            }
            Some(param)
        }
        None => None,
    };
    let (mut grouping, without) = match &aggregate.modifier {
        Some(LabelModifier::Include(labels)) => (labels.labels.clone(), false),
        Some(LabelModifier::Exclude(labels)) => (labels.labels.clone(), true),
        None => (Vec::new(), false),
    };
    grouping.sort();
    grouping.dedup();
    let shared = match &param {
        Some(param) => Shared::of(node, &[&expr, param]),
        None => Shared::of(node, &[&expr]),
    };
    Ok(Expr::Aggregate(Box::new(Aggregate {
        op,
        expr,
        param,
        grouping,
        without,
        shared,
    })))
}

fn compile_call(call: &ast::Call, node: &ast::Expr) -> Result<Expr, CompileError> {
    let name = match call.func.name {
        HOLT_WINTERS_RENAMED => Func::HoltWinters.name(),
        other => other,
    };
    let Some(func) = Func::from_name(name) else {
        let why = if name.starts_with("histogram_") {
            "native histograms are not supported; histogram_quantile over classic `_bucket` series is"
        } else {
            "not in dbwatch's evaluator (Prometheus 2.42 functions only)"
        };
        return Err(unsupported(format!("the function `{name}` ({why})"), node));
    };
    let mut args = Vec::with_capacity(call.args.args.len());
    for arg in &call.args.args {
        args.push(compile_node(arg)?);
    }
    if func == Func::Timestamp && matches!(args.first(), Some(Expr::Matrix(..))) {
        return Err(CompileError::Parse(
            "timestamp() takes an instant vector".to_owned(),
        ));
    }
    let mut regex = None;
    if func == Func::LabelReplace {
        let (Some(Expr::String(destination)), Some(Expr::String(pattern))) =
            (args.get(1), args.get(4))
        else {
            return Err(CompileError::Parse(
                "label_replace takes a vector and four strings".to_owned(),
            ));
        };
        if !super::labels::is_valid_label_name(destination) {
            return Err(CompileError::Parse(format!(
                "invalid destination label name in label_replace(): {destination}"
            )));
        }
        let matcher = Matcher::new_matcher(
            promql_parser::parser::token::T_EQL_REGEX,
            "label_replace".to_owned(),
            pattern.clone(),
        )
        .map_err(|_| {
            CompileError::Parse(format!(
                "invalid regular expression in label_replace(): {pattern}"
            ))
        })?;
        regex = Some(matcher);
    }
    if func == Func::LabelJoin {
        for (index, arg) in args.iter().enumerate().skip(1) {
            let Expr::String(label) = arg else {
                return Err(CompileError::Parse(
                    "label_join takes a vector and strings".to_owned(),
                ));
            };
            if index != 2 && !super::labels::is_valid_label_name(label) {
                return Err(CompileError::Parse(format!(
                    "invalid label name in label_join(): {label}"
                )));
            }
        }
    }
    Ok(Expr::Call(Box::new(Call { func, args, regex })))
}

#[cfg(test)]
mod tests {
    fn shared_key(text: &str) -> String {
        match compile(text) {
            Ok(Expr::Binary(binary)) => binary.shared.key,
            Ok(Expr::Aggregate(aggregate)) => aggregate.shared.key,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn shared_keys_tell_apart_everything_that_changes_a_result() {
        // Rules share a subexpression's result by this key: any difference that changes the result must
        // show in it, or one rule would get another's answer.
        let groups = [
            vec!["a > 1", "a > bool 1", "a > 1.5", "1 > a", "a >= 1"],
            vec![
                "a / b",
                "a / on(x) b",
                "a / ignoring(x) b",
                "a / on(x) group_left(y) b",
                "a / on(x) group_right b",
                "a / on(y) b",
            ],
            vec!["a and b", "a or b", "a unless b", "a and on(x) b"],
            vec![
                "sum by (x) (a)",
                "sum without (x) (a)",
                "sum by (y) (a)",
                "sum(a)",
                "avg by (x) (a)",
                "sum by (x) (a offset 1m)",
                "sum by (x) (a{j=\"k\"})",
                "sum by (x) (a{j=~\"k\"})",
            ],
            vec![
                "topk(3, a)",
                "topk(5, a)",
                "bottomk(3, a)",
                "quantile(0.5, a)",
                "quantile(0.9, a)",
            ],
            vec![
                "rate(a[5m]) > 1",
                "rate(a[1m]) > 1",
                "irate(a[5m]) > 1",
                "rate(a[5m] offset 1m) > 1",
            ],
        ];
        for group in groups {
            let keys: Vec<String> = group.iter().map(|text| shared_key(text)).collect();
            for (i, key) in keys.iter().enumerate() {
                for (j, other) in keys.iter().enumerate().skip(i + 1) {
                    assert_ne!(key, other, "{} and {} share a key", group[i], group[j]);
                }
            }
        }
        let reads = match compile("sum by (x) (a) / on(x) sum by (x) (b{j=\"k\"}) > 1") {
            Ok(Expr::Binary(binary)) => binary.shared.reads,
            other => panic!("{other:?}"),
        };
        assert_eq!(reads, Some(vec![Arc::from("a"), Arc::from("b")]));
        let any = match compile("sum({__name__=~\"a.*\"})") {
            Ok(Expr::Aggregate(aggregate)) => aggregate.shared.reads,
            other => panic!("{other:?}"),
        };
        assert_eq!(any, None);
    }

    use super::*;

    fn refused(text: &str) -> String {
        match compile(text) {
            Err(error) => error.to_string(),
            Ok(expr) => panic!("{text} compiled to {expr:?}"),
        }
    }

    #[test]
    fn supported_expressions_compile() {
        for text in [
            "db_up == 0",
            "rate(x_total[5m]) > 0.5",
            "sum by (target) (rate(x_total{db=~\"pg|my\"}[5m])) / on(target) group_left sum by (target) (y)",
            "time() - dbwatch_last_success_timestamp_seconds > 300",
            "absent(db_up{target=\"a\"})",
            "label_replace(db_up, \"host\", \"$1\", \"target\", \"(.*):.*\")",
            "topk(3, x) unless y",
            "x offset 5m",
            "x offset -5m",
            "x @ 100",
            "x @ start() offset 1m",
            "max_over_time(rate(x[5m])[30m:1m])",
            "min_over_time(x[10m:] @ end())",
            "count_values(\"v\", x)",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
            "-x",
            "1 + 2",
        ] {
            if let Err(error) = compile(text) {
                panic!("{text}: {error}");
            }
        }
    }

    #[test]
    fn unsupported_constructs_are_named() {
        let subquery = match compile_query("max_over_time(x[30m:1m] offset 5m @ 100)") {
            Ok(Expr::Call(call)) => call,
            other => panic!("{other:?}"),
        };
        let Expr::Subquery(subquery) = &subquery.args[0] else {
            panic!("a subquery argument");
        };
        assert_eq!(
            (
                subquery.range_ms,
                subquery.step_ms,
                subquery.offset_ms,
                subquery.at
            ),
            (1_800_000, Some(60_000), 300_000, Some(At::Time(100_000)))
        );
        let Ok(Expr::Vector(selector)) = compile_query("x offset -1m @ end()") else {
            panic!("a selector");
        };
        assert_eq!(
            (selector.offset_ms, selector.at),
            (-60_000, Some(At::QueryTime))
        );
        assert!(refused("rate(x[5m])[30m:1m]").contains("range vector"));
        assert!(refused("histogram_count(x)").contains("native histograms"));
        assert!(refused("histogram_fraction(0, 1, x)").contains("native histograms"));
        assert!(refused("limitk(2, x)").contains("limitk"));
        assert!(refused("mad_over_time(x[5m])").contains("mad_over_time"));
        assert!(refused("x[5m]").contains("range vector"));
        assert!(refused("\"text\"").contains("string"));
        assert!(refused("x >").contains("could not parse"));
    }

    #[test]
    fn selectors_extract_the_metric_name() {
        let Ok(Expr::Vector(selector)) = compile("{__name__=\"db_up\", target!=\"a\"}") else {
            panic!("not a selector");
        };
        assert_eq!(selector.name.as_deref(), Some("db_up"));
        assert_eq!(selector.matchers.len(), 1);
        assert!(selector.matches(Some("db_up"), |name| (name == "target").then_some("b")));
        assert!(!selector.matches(Some("db_up"), |name| (name == "target").then_some("a")));
        assert!(!selector.matches(Some("other"), |_| None));
    }
}
