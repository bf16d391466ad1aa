//! Kubernetes-style label selectors (`kubectl get -l`), parsed and evaluated in one place for the
//! server (`GET /v1/jobs?labelSelector=`) and the CLI (`list -l`, which checks a selector before
//! sending it).
//!
//! The grammar is kube-apimachinery's: comma-separated requirements, all of which must match:
//!
//! | requirement | matches a label set where |
//! |---|---|
//! | `k=v`, `k==v` | `k` is `v` |
//! | `k!=v` | `k` is not `v`, or there is no `k` |
//! | `k in (a,b)` | `k` is `a` or `b` |
//! | `k notin (a,b)` | `k` is neither, or there is no `k` |
//! | `k` | there is a `k` |
//! | `!k` | there is no `k` |
//!
//! Keys and values are checked as Kubernetes checks label keys and values, so a selector that
//! could never match a Kubernetes label is refused rather than silently matching nothing.
//! Whitespace between tokens is ignored. The empty selector matches everything.
//!
//! Pure: no I/O, and it imports nothing of the crate's.

use std::fmt;

/// A parsed selector: every requirement must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// One requirement on one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `k=v` or `k==v`.
    Equals(String),
    /// `k!=v`.
    NotEquals(String),
    /// `k in (a,b)`.
    In(Vec<String>),
    /// `k notin (a,b)`.
    NotIn(Vec<String>),
    /// `k`.
    Exists,
    /// `!k`.
    DoesNotExist,
}

/// Why a selector does not parse: what is wrong, and where (a 1-based character position).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {message}")]
pub struct SelectorError {
    pub selector: String,
    pub message: String,
}

/// Parses a selector; see the module's documentation for the grammar.
pub fn parse(text: &str) -> Result<Selector, SelectorError> {
    Selector::parse(text)
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let fail = |message: String| SelectorError { selector: text.to_string(), message };
        let tokens = lex(text);
        Parser { tokens, at: 0 }.selector().map_err(fail)
    }

    /// A selector of `key=value` requirements (the API's older `label=k=v` filter).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            requirements: pairs
                .into_iter()
                .map(|(key, value)| Requirement { key, operator: Operator::Equals(value) })
                .collect(),
        }
    }

    /// This selector and `other`: both must match.
    pub fn and(mut self, other: Selector) -> Self {
        self.requirements.extend(other.requirements);
        self
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True for the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a label set matches; `label` looks a key's value up.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| r.matches(label(&r.key)))
    }
}

impl Requirement {
    /// Whether the requirement holds for the label's value (`None`: no such label).
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (&self.operator, value) {
            (Operator::Equals(want), Some(v)) => v == want,
            (Operator::NotEquals(want), v) => v != Some(want.as_str()),
            (Operator::In(set), Some(v)) => set.iter().any(|s| s == v),
            (Operator::NotIn(set), v) => v.is_none_or(|v| set.iter().all(|s| s != v)),
            (Operator::Exists, v) => v.is_some(),
            (Operator::DoesNotExist, v) => v.is_none(),
            (Operator::Equals(_) | Operator::In(_), None) => false,
        }
    }
}

impl fmt::Display for Selector {
    /// The canonical text: it parses back to the same selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.operator {
            Operator::Equals(v) => write!(f, "{key}={v}"),
            Operator::NotEquals(v) => write!(f, "{key}!={v}"),
            Operator::In(set) => write!(f, "{key} in ({})", set.join(",")),
            Operator::NotIn(set) => write!(f, "{key} notin ({})", set.join(",")),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A key or a value: a run of characters that are neither whitespace nor one of `!=,()<>`.
    Word(String),
    /// `in` and `notin` are words too, in a value's place (`k=in` is the value `in`).
    In,
    NotIn,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Comma,
    Open,
    Close,
    /// `<` or `>`: apimachinery's numeric comparisons, not supported here.
    Compare(char),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Self::Word(w) => format!("{w:?}"),
            Self::In => "'in'".into(),
            Self::NotIn => "'notin'".into(),
            Self::Not => "'!'".into(),
            Self::Equals => "'='".into(),
            Self::DoubleEquals => "'=='".into(),
            Self::NotEquals => "'!='".into(),
            Self::Comma => "','".into(),
            Self::Open => "'('".into(),
            Self::Close => "')'".into(),
            Self::Compare(c) => format!("'{c}'"),
            Self::End => "the end".into(),
        }
    }

    /// A word, or `in`/`notin` read as the words they spell (in a value's place).
    fn as_value(&self) -> Option<String> {
        match self {
            Self::Word(w) => Some(w.clone()),
            Self::In => Some("in".into()),
            Self::NotIn => Some("notin".into()),
            _ => None,
        }
    }
}

/// A token and the 1-based character position where it starts.
type Positioned = (Token, usize);

fn is_special(c: char) -> bool {
    c.is_whitespace() || matches!(c, '!' | '=' | ',' | '(' | ')' | '<' | '>')
}

fn lex(text: &str) -> Vec<Positioned> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let next = chars.get(i + 1).copied();
        let (token, width) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '!' if next == Some('=') => (Token::NotEquals, 2),
            '!' => (Token::Not, 1),
            '=' if next == Some('=') => (Token::DoubleEquals, 2),
            '=' => (Token::Equals, 1),
            ',' => (Token::Comma, 1),
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            '<' | '>' => (Token::Compare(c), 1),
            _ => {
                let start = i;
                while i < chars.len() && !is_special(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let token = match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Word(word),
                };
                tokens.push((token, at));
                continue;
            }
        };
        tokens.push((token, at));
        i += width;
    }
    tokens.push((Token::End, chars.len() + 1));
    tokens
}

struct Parser {
    tokens: Vec<Positioned>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Positioned {
        // The lexer always ends the list with End, and the parser never moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Positioned {
        let token = self.peek().clone();
        if token.0 != Token::End {
            self.at += 1;
        }
        token
    }

    fn selector(mut self) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        if self.peek().0 == Token::End {
            return Ok(Selector { requirements });
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                (Token::End, _) => return Ok(Selector { requirements }),
                (Token::Comma, at) => {
                    if matches!(self.peek().0, Token::End | Token::Comma) {
                        return Err(format!("an empty requirement after ',' at character {at}"));
                    }
                }
                (token, at) => {
                    return Err(format!(
                        "{} at character {at}: want ',' between requirements (or the end)",
                        token.describe()
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (first, at) = self.next();
        if first == Token::Not {
            let (token, key_at) = self.next();
            let Token::Word(key) = token else {
                return Err(format!("{} at character {key_at}: want a label key after '!'", token.describe()));
            };
            check_key(&key, key_at)?;
            if !matches!(self.peek().0, Token::Comma | Token::End) {
                let (token, at) = self.peek().clone();
                return Err(format!(
                    "{} at character {at}: '!{key}' takes no operator or value (it means: no label {key})",
                    token.describe()
                ));
            }
            return Ok(Requirement { key, operator: Operator::DoesNotExist });
        }
        let Token::Word(key) = first else {
            return Err(format!("{} at character {at}: want a label key", first.describe()));
        };
        check_key(&key, at)?;
        let (op, op_at) = self.peek().clone();
        let operator = match op {
            Token::Comma | Token::End => Operator::Exists,
            Token::Equals | Token::DoubleEquals | Token::NotEquals => {
                self.next();
                let value = self.exact_value(&key, op_at)?;
                if op == Token::NotEquals { Operator::NotEquals(value) } else { Operator::Equals(value) }
            }
            Token::In | Token::NotIn => {
                self.next();
                let values = self.value_set(&key, &op, op_at)?;
                if op == Token::In { Operator::In(values) } else { Operator::NotIn(values) }
            }
            Token::Compare(c) => {
                return Err(format!(
                    "'{c}' at character {op_at}: numeric comparisons are not supported; use =, ==, !=, in, notin, KEY or !KEY"
                ));
            }
            other => {
                return Err(format!(
                    "{} at character {op_at} after the key {key:?}: want =, ==, !=, in, notin, ',' or the end",
                    other.describe()
                ));
            }
        };
        Ok(Requirement { key, operator })
    }

    /// The value after `=`, `==` or `!=`: a word, or nothing (the empty value) before `,` or the end.
    fn exact_value(&mut self, key: &str, op_at: usize) -> Result<String, String> {
        let (token, at) = self.peek().clone();
        if matches!(token, Token::Comma | Token::End) {
            return Ok(String::new());
        }
        let Some(value) = token.as_value() else {
            return Err(format!(
                "{} at character {at}: want a value for {key:?} after the operator at character {op_at}",
                token.describe()
            ));
        };
        self.next();
        check_value(key, &value, at)?;
        Ok(value)
    }

    /// `(a, b, c)` after `in` or `notin`.
    fn value_set(&mut self, key: &str, op: &Token, op_at: usize) -> Result<Vec<String>, String> {
        let word = if *op == Token::In { "in" } else { "notin" };
        let (open, open_at) = self.next();
        if open != Token::Open {
            return Err(format!(
                "{} at character {open_at}: want '(' after '{word}' (character {op_at}), as in \"{key} {word} (a,b)\"",
                open.describe()
            ));
        }
        if self.peek().0 == Token::Close {
            return Err(format!("'{word} ()' at character {op_at}: the set of values is empty"));
        }
        let mut values: Vec<String> = Vec::new();
        loop {
            // One element: a value, or nothing (`(a,)` and `(a,,b)` hold the empty value, as in
            // apimachinery).
            let (token, at) = self.peek().clone();
            let value = match token {
                Token::Comma | Token::Close => String::new(),
                Token::End => return Err(format!("the '(' at character {open_at} is never closed")),
                token => {
                    let Some(value) = token.as_value() else {
                        return Err(format!("{} at character {at}: want a value or ')'", token.describe()));
                    };
                    self.next();
                    check_value(key, &value, at)?;
                    value
                }
            };
            if !values.contains(&value) {
                values.push(value);
            }
            match self.next() {
                (Token::Comma, _) => {}
                (Token::Close, _) => return Ok(values),
                (Token::End, _) => return Err(format!("the '(' at character {open_at} is never closed")),
                (token, at) => {
                    return Err(format!(
                        "{} at character {at}: want ',' or ')' in the set of values",
                        token.describe()
                    ));
                }
            }
        }
    }
}

/// A Kubernetes label name: at most 63 characters, alphanumeric at both ends, `-`, `_`, `.`
/// inside.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("the name part is empty");
    }
    if name.len() > 63 {
        return Some("the name part is longer than 63 characters");
    }
    let ok_inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(ok_inner) {
        return Some("only letters, digits, '-', '_' and '.' may appear");
    }
    let first_last = [name.chars().next(), name.chars().last()];
    if !first_last.iter().flatten().all(char::is_ascii_alphanumeric) {
        return Some("it must start and end with a letter or a digit");
    }
    None
}

/// A DNS subdomain (the prefix of a key): lowercase, at most 253 characters, dot-separated labels.
fn prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.is_empty() {
        return Some("the prefix before '/' is empty");
    }
    if prefix.len() > 253 {
        return Some("the prefix is longer than 253 characters");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !prefix.split('.').all(label_ok) {
        return Some("the prefix must be a DNS subdomain (lowercase letters, digits, '-' and '.')");
    }
    None
}

fn check_key(key: &str, at: usize) -> Result<(), String> {
    let problem = match key.split_once('/') {
        Some((prefix, name)) => prefix_problem(prefix).or_else(|| name_problem(name)),
        None => name_problem(key),
    };
    match problem {
        Some(problem) => Err(format!("{key:?} at character {at} is not a valid label key: {problem}")),
        None => Ok(()),
    }
}

fn check_value(key: &str, value: &str, at: usize) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    match name_problem(value) {
        Some(problem) => {
            Err(format!("{value:?} at character {at} is not a valid label value (for {key:?}): {problem}"))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn matches(selector: &str, set: &BTreeMap<String, String>) -> bool {
        parse(selector).unwrap_or_else(|e| panic!("{e}")).matches(|k| set.get(k).map(String::as_str))
    }

    fn error(selector: &str) -> String {
        match parse(selector) {
            Ok(s) => panic!("{selector:?} parsed as {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_operator_parses() {
        let s = parse("a=1, b==2 ,c!=3,d in (x, y),e notin (z),f,!g,example.com/h=v_1.x").expect("parses");
        let ops: Vec<(&str, &Operator)> = s.requirements().iter().map(|r| (r.key.as_str(), &r.operator)).collect();
        assert_eq!(
            ops,
            vec![
                ("a", &Operator::Equals("1".into())),
                ("b", &Operator::Equals("2".into())),
                ("c", &Operator::NotEquals("3".into())),
                ("d", &Operator::In(vec!["x".into(), "y".into()])),
                ("e", &Operator::NotIn(vec!["z".into()])),
                ("f", &Operator::Exists),
                ("g", &Operator::DoesNotExist),
                ("example.com/h", &Operator::Equals("v_1.x".into())),
            ]
        );
        assert_eq!(s.to_string(), "a=1,b=2,c!=3,d in (x,y),e notin (z),f,!g,example.com/h=v_1.x");
        assert_eq!(parse(&s.to_string()), Ok(s), "the canonical text parses back");
    }

    #[test]
    fn the_empty_selector_matches_everything() {
        for text in ["", "   "] {
            let s = parse(text).expect("parses");
            assert!(s.is_empty());
            assert!(s.matches(|_| None));
        }
    }

    #[test]
    fn empty_values_and_words_that_are_operators_elsewhere() {
        assert_eq!(parse("a=").map(|s| s.requirements()[0].operator.clone()), Ok(Operator::Equals(String::new())));
        assert_eq!(parse("a!=,b").map(|s| s.requirements().len()), Ok(2));
        assert_eq!(
            parse("a in (x,)").map(|s| s.requirements()[0].operator.clone()),
            Ok(Operator::In(vec!["x".into(), String::new()]))
        );
        assert_eq!(parse("a=in").map(|s| s.to_string()), Ok("a=in".into()));
        assert_eq!(parse("a in (in,notin)").map(|s| s.to_string()), Ok("a in (in,notin)".into()));
    }

    #[test]
    fn requirements_match_as_kubernetes_matches_them() {
        let set = labels(&[("team", "data"), ("tier", "gold"), ("empty", "")]);
        let cases = [
            ("team=data", true),
            ("team==data", true),
            ("team=ops", false),
            ("missing=x", false),
            ("team!=ops", true),
            ("team!=data", false),
            ("missing!=x", true),
            ("team in (ops,data)", true),
            ("team in (ops)", false),
            ("missing in (x)", false),
            ("team notin (ops)", true),
            ("team notin (ops,data)", false),
            ("missing notin (x)", true),
            ("team", true),
            ("missing", false),
            ("!missing", true),
            ("!team", false),
            ("empty=", true),
            ("empty", true),
            ("team=data,tier=gold", true),
            ("team=data,tier=silver", false),
            ("team=data,team!=data", false),
            ("team in (data), !missing, tier notin (bronze)", true),
        ];
        for (selector, expected) in cases {
            assert_eq!(matches(selector, &set), expected, "{selector}");
        }
    }

    #[test]
    fn pairs_make_an_equality_selector() {
        let s = Selector::from_pairs([("a".to_string(), "b,c=d".to_string())]);
        assert!(s.matches(|k| (k == "a").then_some("b,c=d")));
        let both = s.and(parse("x").expect("parses"));
        assert_eq!(both.requirements().len(), 2);
    }

    #[test]
    fn malformed_selectors_say_what_is_wrong_and_where() {
        let cases = [
            ("a=b,", "an empty requirement after ',' at character 4"),
            ("a=b,,c=d", "an empty requirement after ',' at character 4"),
            (",a", "',' at character 1: want a label key"),
            ("=b", "'=' at character 1: want a label key"),
            ("a b", "\"b\" at character 3 after the key \"a\": want =, ==, !=, in, notin"),
            ("a=b c", "\"c\" at character 5: want ',' between requirements"),
            ("a=(b)", "'(' at character 3: want a value for \"a\""),
            ("a in b", "\"b\" at character 6: want '(' after 'in' (character 3), as in \"a in (a,b)\""),
            ("a in (b", "the '(' at character 6 is never closed"),
            ("a in (b c)", "\"c\" at character 9: want ',' or ')'"),
            ("a notin ()", "'notin ()' at character 3: the set of values is empty"),
            ("a in (b,(", "'(' at character 9: want a value or ')'"),
            ("!a=b", "'=' at character 3: '!a' takes no operator or value"),
            ("!", "the end at character 2: want a label key after '!'"),
            ("a>1", "'>' at character 2: numeric comparisons are not supported"),
            ("a b=c", "\"b\" at character 3 after the key \"a\""),
            ("a=b=c", "'=' at character 4: want ',' between requirements"),
            ("A B=c", "\"B\" at character 3"),
            ("-a=b", "\"-a\" at character 1 is not a valid label key: it must start and end with a letter or a digit"),
            ("a=b:c", "\"b:c\" at character 3 is not a valid label value (for \"a\"): only letters"),
            ("Example.com/a=b", "not a valid label key: the prefix must be a DNS subdomain"),
            ("/a=b", "the prefix before '/' is empty"),
            ("x/=b", "the name part is empty"),
        ];
        for (selector, expected) in cases {
            let message = error(selector);
            assert!(message.starts_with(&format!("invalid label selector {selector:?}: ")), "{message}");
            assert!(message.contains(expected), "{selector}: {message}\n  want: {expected}");
        }
        let long = format!("a={}", "v".repeat(64));
        assert!(error(&long).contains("longer than 63 characters"));
        assert!(parse(&format!("a={}", "v".repeat(63))).is_ok());
    }

    #[test]
    fn any_text_parses_or_fails_without_panicking() {
        // Every prefix of a tricky selector, and some odd characters.
        let text = "a in (b, c),!d,e!=f,g==h,é=ü,(x),)=(,!!a, in ,notin(),=,==,!=";
        for end in text.char_indices().map(|(i, _)| i).chain([text.len()]) {
            let _ = parse(&text[..end]);
        }
        assert!(parse("é=1").is_err());
    }
}
