//! Rows as name → text maps, parsed by dbwatch rather than by the driver's type decoding.
//!
//! Every statement runs over the text protocol, so each value arrives as text. sqlx's typed decoding rejects
//! much of what SHOW statements and performance_schema return (unsigned and DECIMAL sums, binary collations),
//! and the column names of SHOW REPLICA STATUS differ by flavour and version. Reading each row into a map of
//! column name to text, and parsing from that map, lets rows from a live server and outputs transcribed from
//! vendor documentation (the test fixtures) go through exactly the same code.

use sqlx::mysql::MySqlRow;
use sqlx::{Column, Row};

/// One row: column names in server order, each with its text or `None` for SQL NULL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextRow {
    columns: Vec<(String, Option<String>)>,
}

/// A row whose shape is not what the statement promises.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error("no column named {0}")]
    MissingColumn(String),
    #[error("column {column} holds {value:?}, not a number")]
    NotANumber { column: String, value: String },
    #[error("{0}")]
    Other(String),
}

impl TextRow {
    pub fn new(columns: Vec<(String, Option<String>)>) -> Self {
        TextRow { columns }
    }

    /// Reads every column as bytes, without sqlx's type check, and keeps them as (lossy) UTF-8 text.
    pub fn from_sqlx(row: &MySqlRow) -> Self {
        let mut columns = Vec::with_capacity(row.columns().len());
        for (index, column) in row.columns().iter().enumerate() {
            // With the text protocol every value is its textual form, whatever the column type; a value that
            // cannot be read at all is treated like NULL rather than failing the whole row.
            let value = row
                .try_get_unchecked::<Option<Vec<u8>>, _>(index)
                .ok()
                .flatten()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            columns.push((column.name().to_owned(), value));
        }
        TextRow { columns }
    }

    /// The value of the first of `names` that the row has, compared without case (MySQL 5.7 spells
    /// `Channel_name` where 8.0 spells `Channel_Name`). `Ok(None)` is SQL NULL; `Err` means no such column.
    pub fn column(&self, names: &[&str]) -> Result<Option<&str>, ShapeError> {
        for name in names {
            if let Some((_, value)) = self
                .columns
                .iter()
                .find(|(column, _)| column.eq_ignore_ascii_case(name))
            {
                return Ok(value.as_deref());
            }
        }
        Err(ShapeError::MissingColumn(names.join(" or ")))
    }

    /// Like [`TextRow::column`], for columns some versions lack: absent and NULL are both `None`.
    pub fn optional(&self, names: &[&str]) -> Option<&str> {
        self.column(names).ok().flatten()
    }

    /// A numeric column; `Ok(None)` for NULL.
    pub fn number(&self, names: &[&str]) -> Result<Option<f64>, ShapeError> {
        match self.column(names)? {
            None => Ok(None),
            Some(text) => parse_number(names[0], text).map(Some),
        }
    }

    /// A numeric column some versions lack; absent, NULL and empty are all `None`.
    pub fn optional_number(&self, names: &[&str]) -> Result<Option<f64>, ShapeError> {
        match self.optional(names) {
            None => Ok(None),
            Some(text) if text.trim().is_empty() => Ok(None),
            Some(text) => parse_number(names[0], text).map(Some),
        }
    }

    pub fn columns(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.columns
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_deref()))
    }
}

/// A decimal number as MySQL prints it (integers, DECIMAL sums, `0.200000`).
pub fn parse_number(column: &str, text: &str) -> Result<f64, ShapeError> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| ShapeError::NotANumber {
            column: column.to_owned(),
            value: text.to_owned(),
        })
}

/// A boolean setting or status as MySQL prints it: `ON`/`OFF`, `YES`/`NO`, `1`/`0`.
pub fn parse_flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_uppercase().as_str() {
        "ON" | "YES" | "1" | "TRUE" => Some(true),
        "OFF" | "NO" | "0" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Parses the vertical output of the mysql client (`\G`), the layout vendor manuals print, into rows.
/// `NULL` becomes SQL NULL; lines starting with `#` are the fixture's own comments.
#[cfg(test)]
pub(crate) fn parse_vertical(text: &str) -> Vec<TextRow> {
    let mut rows = Vec::new();
    let mut current: Option<Vec<(String, Option<String>)>> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() || trimmed.starts_with("mysql>") {
            continue;
        }
        if trimmed.starts_with("***") {
            if let Some(columns) = current.take() {
                rows.push(TextRow::new(columns));
            }
            current = Some(Vec::new());
            continue;
        }
        let Some((name, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let value = (value != "NULL").then(|| value.to_owned());
        current
            .get_or_insert_with(Vec::new)
            .push((name.trim().to_owned(), value));
    }
    if let Some(columns) = current {
        rows.push(TextRow::new(columns));
    }
    rows
}

/// Parses the boxed table layout of the mysql client (`+---+` borders, `|` separators) into rows.
#[cfg(test)]
pub(crate) fn parse_table(text: &str) -> Vec<TextRow> {
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if !trimmed.starts_with('|') {
            continue;
        }
        let cells: Vec<String> = trimmed
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect();
        match &header {
            None => header = Some(cells),
            Some(names) => rows.push(TextRow::new(
                names
                    .iter()
                    .cloned()
                    .zip(
                        cells
                            .into_iter()
                            .map(|cell| (cell != "NULL").then_some(cell)),
                    )
                    .collect(),
            )),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_any_alias_without_case() {
        let row = TextRow::new(vec![
            ("Channel_name".into(), Some(String::new())),
            ("Seconds_Behind_Master".into(), None),
            ("Exec_Master_Log_Pos".into(), Some("1307".into())),
        ]);
        assert_eq!(row.column(&["Channel_Name"]), Ok(Some("")));
        assert_eq!(
            row.column(&["Seconds_Behind_Source", "Seconds_Behind_Master"]),
            Ok(None)
        );
        assert_eq!(
            row.number(&["Exec_Source_Log_Pos", "Exec_Master_Log_Pos"]),
            Ok(Some(1307.0))
        );
        assert!(matches!(
            row.column(&["Replica_IO_Running", "Slave_IO_Running"]),
            Err(ShapeError::MissingColumn(_))
        ));
        assert_eq!(row.optional(&["Connection_name"]), None);
    }

    #[test]
    fn numbers_and_flags_parse_as_mysql_prints_them() {
        assert_eq!(parse_number("x", "0.200000"), Ok(0.2));
        assert_eq!(
            parse_number("x", "18446744073709551615"),
            Ok(1.8446744073709552e19)
        );
        assert!(parse_number("x", "Yes").is_err());
        assert_eq!(parse_flag("ON"), Some(true));
        assert_eq!(parse_flag("Off"), Some(false));
        assert_eq!(parse_flag("Connecting"), None);
    }

    #[test]
    fn vertical_and_table_layouts_parse_into_rows() {
        let vertical =
            "# a comment\n*** 1. row ***\n  A: 1\n  B: NULL\n  C: x:y\n*** 2. row ***\n  A: 2\n";
        let rows = parse_vertical(vertical);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].column(&["C"]), Ok(Some("x:y")));
        assert_eq!(rows[0].column(&["B"]), Ok(None));
        let table = "+---+---+\n| a | b |\n+---+---+\n| 1 | x |\n| 2 | y |\n+---+---+\n";
        let rows = parse_table(table);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].column(&["b"]), Ok(Some("y")));
    }
}
