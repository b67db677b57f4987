//! A rule file as a tree of spanned TOML nodes. toml_edit parses the file with the byte
//! range of every key and value; this module flattens its standard tables, inline tables,
//! arrays and arrays of tables into one shape, so the rule reader walks a single kind of
//! node and can point every diagnostic at the exact key or value.

use std::ops::Range;

pub type Span = Range<usize>;

#[derive(Debug)]
pub enum Node<'a> {
    Table(Vec<Entry<'a>>),
    Array(Vec<Spanned<'a>>),
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
}

#[derive(Debug)]
pub struct Spanned<'a> {
    pub span: Span,
    pub node: Node<'a>,
}

#[derive(Debug)]
pub struct Entry<'a> {
    pub key: &'a str,
    pub key_span: Span,
    pub value: Spanned<'a>,
}

impl Node<'_> {
    /// The TOML type name, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Table(_) => "a table",
            Node::Array(_) => "an array",
            Node::Str(_) => "a string",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Bool(_) => "a boolean",
            Node::Datetime => "a date-time",
        }
    }
}

/// Converts a parsed document's root table.
pub fn root(doc: &toml_edit::ImDocument<String>) -> Spanned<'_> {
    table(doc.as_table(), 0..doc.raw().len())
}

fn table(t: &toml_edit::Table, fallback: Span) -> Spanned<'_> {
    let span = t.span().unwrap_or(fallback);
    let entries = t
        .iter()
        .filter_map(|(k, item)| {
            let key = t.key(k)?;
            let key_span = key.span().unwrap_or_else(|| span.clone());
            Some(Entry { key: k, key_span: key_span.clone(), value: item_node(item, key_span)? })
        })
        .collect();
    Spanned { span, node: Node::Table(entries) }
}

fn item_node(item: &toml_edit::Item, fallback: Span) -> Option<Spanned<'_>> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Value(v) => Some(value(v, fallback)),
        toml_edit::Item::Table(t) => Some(table(t, fallback)),
        toml_edit::Item::ArrayOfTables(a) => {
            let span = a.span().unwrap_or(fallback.clone());
            Some(Spanned { span, node: Node::Array(a.iter().map(|t| table(t, fallback.clone())).collect()) })
        }
    }
}

fn value(v: &toml_edit::Value, fallback: Span) -> Spanned<'_> {
    use toml_edit::Value as V;
    let span = v.span().unwrap_or(fallback);
    let node = match v {
        V::String(s) => Node::Str(s.value()),
        V::Integer(i) => Node::Int(*i.value()),
        V::Float(f) => Node::Float(*f.value()),
        V::Boolean(b) => Node::Bool(*b.value()),
        V::Datetime(_) => Node::Datetime,
        V::Array(a) => Node::Array(a.iter().map(|x| value(x, span.clone())).collect()),
        V::InlineTable(t) => Node::Table(
            t.iter()
                .map(|(k, x)| {
                    let key_span = t.key(k).and_then(|k| k.span()).unwrap_or_else(|| span.clone());
                    Entry { key: k, key_span: key_span.clone(), value: value(x, key_span) }
                })
                .collect(),
        ),
    };
    Spanned { span, node }
}
