//! The one SQL surface both backends implement: statements with `?N`
//! placeholders, four value types (NULL, 64-bit integer, text, bytes), rows
//! read whole. Every query in the crate is written once in the dialect both
//! SQLite and PostgreSQL accept (`ON CONFLICT`, `RETURNING`, `CAST`), so the
//! same code runs on either; only connections, migrations and transactions
//! differ (see `store.rs` and `pg.rs`).

use crate::StorageError;

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum P<'a> {
    Null,
    I(i64),
    T(&'a str),
    B(&'a [u8]),
}

impl From<i64> for P<'_> {
    fn from(v: i64) -> Self {
        P::I(v)
    }
}
impl From<i32> for P<'_> {
    fn from(v: i32) -> Self {
        P::I(v.into())
    }
}
impl From<u32> for P<'_> {
    fn from(v: u32) -> Self {
        P::I(v.into())
    }
}
impl From<u8> for P<'_> {
    fn from(v: u8) -> Self {
        P::I(v.into())
    }
}
impl<'a> From<&'a str> for P<'a> {
    fn from(v: &'a str) -> Self {
        P::T(v)
    }
}
impl<'a> From<&'a String> for P<'a> {
    fn from(v: &'a String) -> Self {
        P::T(v)
    }
}
impl<'a> From<&'a [u8]> for P<'a> {
    fn from(v: &'a [u8]) -> Self {
        P::B(v)
    }
}
impl<'a> From<&'a Vec<u8>> for P<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        P::B(v)
    }
}
impl From<Option<i64>> for P<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(P::Null, P::I)
    }
}

/// `args![a, b]`: a parameter slice.
macro_rules! args {
    ($($e:expr),* $(,)?) => { &[$($crate::db::P::from($e)),*][..] };
}
pub(crate) use args;

/// A column value as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum V {
    Null,
    I(i64),
    T(String),
    B(Vec<u8>),
}

/// One result row.
#[derive(Debug)]
pub(crate) struct Row(pub(crate) Vec<V>);

fn bad_col(n: usize) -> StorageError {
    StorageError::Corrupt {
        key: format!("column {n}"),
        what: "unexpected column type",
    }
}

impl Row {
    fn take(&mut self, n: usize) -> Result<V, StorageError> {
        self.0
            .get_mut(n)
            .map(|v| std::mem::replace(v, V::Null))
            .ok_or_else(|| bad_col(n))
    }
    pub(crate) fn i(&self, n: usize) -> Result<i64, StorageError> {
        self.oi(n)?.ok_or_else(|| bad_col(n))
    }
    pub(crate) fn oi(&self, n: usize) -> Result<Option<i64>, StorageError> {
        match self.0.get(n) {
            Some(V::I(v)) => Ok(Some(*v)),
            Some(V::Null) => Ok(None),
            _ => Err(bad_col(n)),
        }
    }
    pub(crate) fn s(&mut self, n: usize) -> Result<String, StorageError> {
        self.os(n)?.ok_or_else(|| bad_col(n))
    }
    pub(crate) fn os(&mut self, n: usize) -> Result<Option<String>, StorageError> {
        match self.take(n)? {
            V::T(s) => Ok(Some(s)),
            V::Null => Ok(None),
            _ => Err(bad_col(n)),
        }
    }
    pub(crate) fn b(&mut self, n: usize) -> Result<Vec<u8>, StorageError> {
        self.ob(n)?.ok_or_else(|| bad_col(n))
    }
    pub(crate) fn ob(&mut self, n: usize) -> Result<Option<Vec<u8>>, StorageError> {
        match self.take(n)? {
            V::B(b) => Ok(Some(b)),
            V::Null => Ok(None),
            _ => Err(bad_col(n)),
        }
    }
}

/// A connection, or a transaction on one.
pub(crate) trait Db {
    /// Runs a statement; returns the rows it changed.
    fn exec(&mut self, sql: &str, p: &[P<'_>]) -> Result<u64, StorageError>;
    /// Runs a query; returns every row.
    fn query(&mut self, sql: &str, p: &[P<'_>]) -> Result<Vec<Row>, StorageError>;
    /// The first row, if any.
    fn opt(&mut self, sql: &str, p: &[P<'_>]) -> Result<Option<Row>, StorageError> {
        Ok(self.query(sql, p)?.into_iter().next())
    }
    /// The first row; a missing row is [`StorageError::Corrupt`].
    fn one(&mut self, sql: &str, p: &[P<'_>]) -> Result<Row, StorageError> {
        self.opt(sql, p)?.ok_or(StorageError::Corrupt {
            key: String::new(),
            what: "query returned no row",
        })
    }
}

/// SQLite: a connection (or a transaction, which derefs to one).
pub(crate) struct Sqlite<'a>(pub(crate) &'a rusqlite::Connection);

impl rusqlite::ToSql for P<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            P::Null => ValueRef::Null,
            P::I(v) => ValueRef::Integer(v),
            P::T(s) => ValueRef::Text(s.as_bytes()),
            P::B(b) => ValueRef::Blob(b),
        }))
    }
}

impl Db for Sqlite<'_> {
    fn exec(&mut self, sql: &str, p: &[P<'_>]) -> Result<u64, StorageError> {
        let mut st = self.0.prepare_cached(sql)?;
        Ok(st.execute(rusqlite::params_from_iter(p.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, p: &[P<'_>]) -> Result<Vec<Row>, StorageError> {
        use rusqlite::types::ValueRef;
        let mut st = self.0.prepare_cached(sql)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(p.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(match r.get_ref(i)? {
                    ValueRef::Null => V::Null,
                    ValueRef::Integer(v) => V::I(v),
                    // No column holds a REAL; an integer-valued one reads as its integer.
                    ValueRef::Real(f) => V::I(f as i64),
                    ValueRef::Text(t) => V::T(
                        std::str::from_utf8(t)
                            .map_err(|_| StorageError::Corrupt {
                                key: format!("column {i}"),
                                what: "text is not UTF-8",
                            })?
                            .to_owned(),
                    ),
                    ValueRef::Blob(b) => V::B(b.to_vec()),
                });
            }
            out.push(Row(vals));
        }
        Ok(out)
    }
}
