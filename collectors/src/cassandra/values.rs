//! Lenient reading of CQL numbers: virtual-table column types have shifted between versions (int versus
//! bigint), so numeric columns are read as any CQL number rather than failing a whole view on a type change.

use scylla::value::CqlValue;

/// The value as f64 when it is a CQL number; `None` for null or any other type.
pub fn number(value: Option<&CqlValue>) -> Option<f64> {
    // Integer to f64: the counters read here stay far below 2^53.
    match value? {
        CqlValue::TinyInt(value) => Some(f64::from(*value)),
        CqlValue::SmallInt(value) => Some(f64::from(*value)),
        CqlValue::Int(value) => Some(f64::from(*value)),
        CqlValue::BigInt(value) => Some(*value as f64),
        CqlValue::Counter(value) => Some(value.0 as f64),
        CqlValue::Float(value) => Some(f64::from(*value)),
        CqlValue::Double(value) => Some(*value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_bigints_and_doubles_are_numbers_text_is_not() {
        assert_eq!(number(Some(&CqlValue::Int(7))), Some(7.0));
        assert_eq!(
            number(Some(&CqlValue::BigInt(1 << 40))),
            Some(1_099_511_627_776.0)
        );
        assert_eq!(number(Some(&CqlValue::Double(0.25))), Some(0.25));
        assert_eq!(number(Some(&CqlValue::Text("7".into()))), None);
        assert_eq!(number(None), None);
    }
}
