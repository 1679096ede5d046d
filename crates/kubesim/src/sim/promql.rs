//! The part of PromQL the health endpoint answers: an instant-vector
//! selector (`name{label="v", label!="v", label=~"re", label!~"re"}`),
//! `count(...)` and `sum(...)` over one, parentheses, and a comparison with
//! a number (`expr > 0`, `0 < expr`), with Prometheus's semantics: a
//! comparison filters (the samples for which it holds, values and labels
//! kept); an aggregation without `by` gives one sample without labels, or
//! nothing when nothing comes in. Anything else is refused with a message
//! naming it, as Prometheus's `bad_data` errors do.

use std::collections::BTreeMap;

/// One series and its current value. `labels` holds `__name__`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// A series named `name` with `labels` and `value`.
    pub fn new(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        let mut l: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        l.insert("__name__".into(), name.into());
        Sample { labels: l, value }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
    /// The anchored regex of `=~` and `!~`.
    re: Option<regex::Regex>,
}

impl Matcher {
    fn new(label: String, op: MatchOp, value: String) -> Result<Matcher, String> {
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?} for label {label}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher { label, op, value, re })
    }

    /// Whether a label value (`""` when the series lacks the label) matches.
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Count,
    Sum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl CmpOp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }

    /// The same comparison with its sides swapped (`0 < x` is `x > 0`).
    fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            other => other,
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone)]
pub enum Expr {
    /// The metric name is a `__name__` matcher.
    Selector(Vec<Matcher>),
    Aggregate(AggOp, Box<Expr>),
    /// `inner op value`: keeps the samples for which it holds.
    Compare(Box<Expr>, CmpOp, f64),
}

/// What kubesim answers, said in every "not supported" error.
const SUPPORTED: &str = "kubesim answers instant-vector selectors, count(...), sum(...) and comparisons with a number";

/// Parses a query, or says (Prometheus-style) what is wrong or not supported.
pub fn parse(query: &str) -> Result<Expr, String> {
    let tokens = lex(query)?;
    let mut p = Parser { tokens, at: 0 };
    if p.peek().is_none() {
        return Err("parse error: no expression found in input".into());
    }
    let e = p.comparison()?;
    match p.peek() {
        None => match e {
            Operand::Vector(e) => Ok(e),
            Operand::Number(_) => Err(format!("a bare number is not supported: {SUPPORTED}")),
        },
        Some(t) => Err(p.unexpected(t)),
    }
}

/// Evaluates `expr` over `series`.
pub fn eval(expr: &Expr, series: &[Sample]) -> Vec<Sample> {
    match expr {
        Expr::Selector(ms) => series
            .iter()
            .filter(|s| {
                ms.iter()
                    .all(|m| m.matches(s.labels.get(&m.label).map(String::as_str).unwrap_or("")))
            })
            .cloned()
            .collect(),
        Expr::Aggregate(op, inner) => {
            let input = eval(inner, series);
            if input.is_empty() {
                return Vec::new();
            }
            let value = match op {
                AggOp::Count => input.len() as f64,
                AggOp::Sum => input.iter().map(|s| s.value).sum(),
            };
            vec![Sample {
                labels: BTreeMap::new(),
                value,
            }]
        }
        Expr::Compare(inner, op, n) => eval(inner, series)
            .into_iter()
            .filter(|s| op.holds(s.value, *n))
            .collect(),
    }
}

/// A value as Prometheus writes it in JSON (`"1"`, `"0.5"`, `"+Inf"`, `"NaN"`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    /// A duration (`5m`), only ever refused.
    Dur(String),
    /// Punctuation and operators: `{ } ( ) , = != =~ !~ > >= < <= ==` and
    /// the ones named only to be refused (`[ ] + - * / % ^ @`).
    Op(&'static str),
}

/// A token and the char offset it starts at.
type Spanned = (Tok, usize);

fn lex(q: &str) -> Result<Vec<Spanned>, String> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let tok = match word.to_ascii_lowercase().as_str() {
                "inf" => Tok::Num(f64::INFINITY),
                "nan" => Tok::Num(f64::NAN),
                _ => Tok::Ident(word),
            };
            out.push((tok, start));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '+' || chars[i] == '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let tok = match text.parse::<f64>() {
                Ok(n) => Tok::Num(n),
                Err(_) if text.ends_with(['s', 'm', 'h', 'd', 'w', 'y']) => Tok::Dur(text),
                Err(_) => return Err(format!("parse error at char {}: bad number {text:?}", start + 1)),
            };
            out.push((tok, start));
            continue;
        }
        if matches!(c, '"' | '\'' | '`') {
            let (s, next) = string(&chars, i)?;
            out.push((Tok::Str(s), start));
            i = next;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = ["!=", "=~", "!~", ">=", "<=", "=="]
            .into_iter()
            .find(|o| *o == two)
            .or_else(|| {
                [
                    "{", "}", "(", ")", ",", "=", ">", "<", "[", "]", "+", "-", "*", "/", "%", "^", "@",
                ]
                .into_iter()
                .find(|o| o.starts_with(c))
            });
        match op {
            Some(o) => {
                i += o.len();
                out.push((Tok::Op(o), start));
            }
            None => return Err(format!("parse error at char {}: unexpected character {c:?}", start + 1)),
        }
    }
    Ok(out)
}

/// A quoted string from `chars[at]` (its quote) on: its value and the
/// index after the closing quote. Backquoted strings take no escapes.
fn string(chars: &[char], at: usize) -> Result<(String, usize), String> {
    let quote = chars[at];
    let mut s = String::new();
    let mut i = at + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Ok((s, i + 1));
        }
        if c == '\\' && quote != '`' {
            let e = *chars
                .get(i + 1)
                .ok_or_else(|| format!("parse error at char {}: unterminated quoted string", at + 1))?;
            s.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' | '"' | '\'' => e,
                other => {
                    return Err(format!(
                        "parse error at char {}: unknown escape sequence \\{other}",
                        i + 1
                    ));
                }
            });
            i += 2;
            continue;
        }
        s.push(c);
        i += 1;
    }
    Err(format!("parse error at char {}: unterminated quoted string", at + 1))
}

enum Operand {
    Vector(Expr),
    Number(f64),
}

struct Parser {
    tokens: Vec<Spanned>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Spanned> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some((Tok::Op(o), _)) if *o == op)
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        match self.next() {
            Some((Tok::Op(o), _)) if o == op => Ok(()),
            Some(t) => Err(format!("{} (expected \"{op}\")", self.unexpected(&t))),
            None => Err(format!("parse error: unexpected end of input (expected \"{op}\")")),
        }
    }

    fn unexpected(&self, (tok, at): &Spanned) -> String {
        let what = match tok {
            Tok::Op(o @ ("+" | "-" | "*" | "/" | "%" | "^")) => {
                return format!("arithmetic (\"{o}\") is not supported: {SUPPORTED}");
            }
            Tok::Op("[") => return format!("range selectors (\"[...]\") are not supported: {SUPPORTED}"),
            Tok::Op("@") => return format!("the @ modifier is not supported: {SUPPORTED}"),
            Tok::Ident(w) if ["and", "or", "unless"].contains(&w.as_str()) => {
                return format!("the set operator {w} is not supported: {SUPPORTED}");
            }
            Tok::Ident(w) if w == "offset" => return format!("offset is not supported: {SUPPORTED}"),
            Tok::Ident(w) if w == "bool" => return format!("the bool modifier is not supported: {SUPPORTED}"),
            Tok::Ident(w) => format!("identifier {w:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Num(n) => format!("number {}", format_value(*n)),
            Tok::Dur(d) => format!("duration {d}"),
            Tok::Op(o) => format!("\"{o}\""),
        };
        format!("parse error at char {}: unexpected {what}", at + 1)
    }

    /// `operand [cmp operand]`: one side a vector, the other a number.
    fn comparison(&mut self) -> Result<Operand, String> {
        let left = self.operand()?;
        let op = match self.peek() {
            Some((Tok::Op(o), _)) => match *o {
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                "==" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                _ => return Ok(left),
            },
            _ => return Ok(left),
        };
        self.next();
        if matches!(self.peek(), Some((Tok::Ident(w), _)) if w == "bool") {
            let t = self.peek().cloned().expect("peeked");
            return Err(self.unexpected(&t));
        }
        let right = self.operand()?;
        let e = match (left, right) {
            (Operand::Vector(v), Operand::Number(n)) => Expr::Compare(Box::new(v), op, n),
            (Operand::Number(n), Operand::Vector(v)) => Expr::Compare(Box::new(v), op.flipped(), n),
            (Operand::Vector(_), Operand::Vector(_)) => {
                return Err(format!("a comparison of two vectors is not supported: {SUPPORTED}"));
            }
            (Operand::Number(_), Operand::Number(_)) => {
                return Err(format!("a comparison of two numbers is not supported: {SUPPORTED}"));
            }
        };
        if let Some(t) = self
            .peek()
            .filter(|(t, _)| matches!(t, Tok::Op(">" | ">=" | "<" | "<=" | "==" | "!=")))
        {
            return Err(format!(
                "parse error at char {}: one comparison at a time is supported ({SUPPORTED})",
                t.1 + 1
            ));
        }
        Ok(Operand::Vector(e))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let Some(t) = self.next() else {
            return Err("parse error: unexpected end of input".into());
        };
        match t {
            (Tok::Num(n), _) => Ok(Operand::Number(n)),
            (Tok::Op("-"), _) if matches!(self.peek(), Some((Tok::Num(_), _))) => match self.next() {
                Some((Tok::Num(n), _)) => Ok(Operand::Number(-n)),
                _ => unreachable!("peeked a number"),
            },
            (Tok::Op("("), _) => {
                let inner = self.comparison()?;
                self.expect(")")?;
                Ok(inner)
            }
            (Tok::Op("{"), at) => Ok(Operand::Vector(self.selector(None, at)?)),
            (Tok::Ident(w), at) => {
                if self.is_op("(") {
                    let op = match w.as_str() {
                        "count" => AggOp::Count,
                        "sum" => AggOp::Sum,
                        _ => {
                            return Err(format!(
                                "the function or aggregation {w}(...) is not supported: {SUPPORTED}"
                            ));
                        }
                    };
                    self.next();
                    let inner = match self.comparison()? {
                        Operand::Vector(v) => v,
                        Operand::Number(_) => {
                            return Err(format!(
                                "parse error at char {}: {w}(...) needs a vector, not a number",
                                at + 1
                            ));
                        }
                    };
                    self.expect(")")?;
                    return Ok(Operand::Vector(Expr::Aggregate(op, Box::new(inner))));
                }
                if matches!(w.as_str(), "count" | "sum")
                    && matches!(self.peek(), Some((Tok::Ident(m), _)) if m == "by" || m == "without")
                {
                    return Err(format!("grouping ({w} by/without) is not supported: {SUPPORTED}"));
                }
                if self.is_op("{") {
                    self.next();
                    return Ok(Operand::Vector(self.selector(Some(w), at)?));
                }
                Ok(Operand::Vector(self.selector_done(Some(w), Vec::new(), at)?))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    /// The matchers after `{` up to `}`.
    fn selector(&mut self, name: Option<String>, at: usize) -> Result<Expr, String> {
        let mut raw = Vec::new();
        loop {
            if self.is_op("}") {
                self.next();
                break;
            }
            let label = match self.next() {
                Some((Tok::Ident(l), _)) => l,
                Some(t) => return Err(format!("{} (expected a label name)", self.unexpected(&t))),
                None => return Err("parse error: unexpected end of input inside braces".into()),
            };
            let op = match self.next() {
                Some((Tok::Op("="), _)) => MatchOp::Eq,
                Some((Tok::Op("!="), _)) => MatchOp::Ne,
                Some((Tok::Op("=~"), _)) => MatchOp::Re,
                Some((Tok::Op("!~"), _)) => MatchOp::NotRe,
                Some(t) => return Err(format!("{} (expected =, !=, =~ or !~)", self.unexpected(&t))),
                None => return Err("parse error: unexpected end of input inside braces".into()),
            };
            let value = match self.next() {
                Some((Tok::Str(s), _)) => s,
                Some(t) => return Err(format!("{} (expected a quoted string)", self.unexpected(&t))),
                None => return Err("parse error: unexpected end of input inside braces".into()),
            };
            raw.push(Matcher::new(label, op, value)?);
            match self.next() {
                Some((Tok::Op(","), _)) => continue,
                Some((Tok::Op("}"), _)) => break,
                Some(t) => return Err(format!("{} (expected \",\" or \"}}\")", self.unexpected(&t))),
                None => return Err("parse error: unexpected end of input inside braces".into()),
            }
        }
        self.selector_done(name, raw, at)
    }

    fn selector_done(&mut self, name: Option<String>, mut ms: Vec<Matcher>, at: usize) -> Result<Expr, String> {
        if let Some(n) = name {
            if ms.iter().any(|m| m.label == "__name__") {
                return Err(format!(
                    "parse error at char {}: metric name must not be set twice: {n:?} and a __name__ matcher",
                    at + 1
                ));
            }
            ms.insert(0, Matcher::new("__name__".into(), MatchOp::Eq, n)?);
        }
        if ms.iter().all(|m| m.matches("")) {
            return Err(format!(
                "parse error at char {}: vector selector must contain at least one non-empty matcher",
                at + 1
            ));
        }
        if let Some(t) = self
            .peek()
            .filter(|(t, _)| matches!(t, Tok::Op("[") | Tok::Op("@")) || matches!(t, Tok::Ident(w) if w == "offset"))
        {
            let t = t.clone();
            return Err(self.unexpected(&t));
        }
        Ok(Expr::Selector(ms))
    }
}
