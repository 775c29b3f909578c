//! A batch's rows taken apart into one array per column, as PostgreSQL's `unnest` reads
//! them, straight from the rows' `Serialize` impls: a row's fields go to their columns by
//! name, and no JSON value is built on the way (as one, each row cost a map of owned keys
//! and every value twice).

use std::fmt;

use serde::ser::{self, Impossible, Serialize, SerializeStruct, Serializer};

/// One column of a batch, a value (or NULL) per row.
#[derive(Debug, PartialEq)]
pub enum Column {
    BigInt(Vec<Option<i64>>),
    Integer(Vec<Option<i32>>),
    Boolean(Vec<Option<bool>>),
    /// Text, and any other type PostgreSQL casts from its text (a time, say).
    Text(Vec<Option<String>>),
}

/// The type a column of type `ty` is bound as: itself where it has a `Column` of its own,
/// text (for PostgreSQL to cast) otherwise.
pub fn bound_type(ty: &str) -> &'static str {
    match ty {
        "bigint" => "bigint",
        "integer" => "integer",
        "boolean" => "boolean",
        _ => "text",
    }
}

impl Column {
    fn of_type(ty: &str, rows: usize) -> Column {
        match bound_type(ty) {
            "bigint" => Column::BigInt(Vec::with_capacity(rows)),
            "integer" => Column::Integer(Vec::with_capacity(rows)),
            "boolean" => Column::Boolean(Vec::with_capacity(rows)),
            _ => Column::Text(Vec::with_capacity(rows)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::BigInt(v) => v.len(),
            Column::Integer(v) => v.len(),
            Column::Boolean(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Column::BigInt(v) => v.push(None),
            Column::Integer(v) => v.push(None),
            Column::Boolean(v) => v.push(None),
            Column::Text(v) => v.push(None),
        }
    }
}

/// The fields `columns` (`(name, type)`) of every row, a `Column` each, in that order. A
/// field the columns do not name is left out; a column a row has no field for is NULL in
/// it. A value of another kind than its column's is an error.
pub fn columns<T: Serialize>(rows: &[T], columns: &[(&str, &str)]) -> Result<Vec<Column>, String> {
    let mut out: Vec<Column> = columns.iter().map(|(_, ty)| Column::of_type(ty, rows.len())).collect();
    for (n, row) in rows.iter().enumerate() {
        row.serialize(RowSerializer { columns, out: &mut out, next: 0 }).map_err(|e| e.0)?;
        for (column, (name, _)) in out.iter_mut().zip(columns) {
            match column.len() - n {
                0 => column.push_null(),
                1 => {}
                _ => return Err(format!("batch column {name} given more than one value in row {n}")),
            }
        }
    }
    Ok(out)
}

#[derive(Debug)]
struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// The methods of a `Serializer` for values it refuses: each an error naming `what` it was
/// given.
macro_rules! refuse {
    ($($method:ident($($arg:ty),*) $what:literal;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Error> {
            Err(self.refused($what))
        })*
    };
}

/// The methods of a `Serializer` for compound values, all refused.
macro_rules! refuse_compound {
    () => {
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
            Err(self.refused("a sequence"))
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
            Err(self.refused("a tuple"))
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Error> {
            Err(self.refused("a tuple struct"))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Error> {
            Err(self.refused("a tuple variant"))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
            Err(self.refused("a map"))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Error> {
            Err(self.refused("a struct variant"))
        }
        fn serialize_newtype_variant<V: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &V,
        ) -> Result<Self::Ok, Error> {
            Err(self.refused("a newtype variant"))
        }
    };
}

/// The methods of a `Serializer` for integers, each into its column as `integer` does.
macro_rules! integers {
    ($($method:ident($ty:ty);)*) => {
        $(fn $method(self, n: $ty) -> Result<Self::Ok, Error> {
            self.integer(n.into())
        })*
    };
}

/// One row: a struct whose fields go to their columns.
struct RowSerializer<'a> {
    columns: &'a [(&'a str, &'a str)],
    out: &'a mut [Column],
    /// Where the next field is looked for first: fields usually come in the columns' order.
    next: usize,
}

impl RowSerializer<'_> {
    fn refused(&self, what: &str) -> Error {
        Error(format!("a batch row must be a struct, not {what}"))
    }
}

impl Serializer for RowSerializer<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }

    fn serialize_newtype_struct<V: ?Sized + Serialize>(self, _: &'static str, value: &V) -> Result<(), Error> {
        value.serialize(self)
    }

    refuse! {
        serialize_bool(bool) "a boolean";
        serialize_i8(i8) "a number";
        serialize_i16(i16) "a number";
        serialize_i32(i32) "a number";
        serialize_i64(i64) "a number";
        serialize_u8(u8) "a number";
        serialize_u16(u16) "a number";
        serialize_u32(u32) "a number";
        serialize_u64(u64) "a number";
        serialize_f32(f32) "a number";
        serialize_f64(f64) "a number";
        serialize_char(char) "a character";
        serialize_str(&str) "a string";
        serialize_bytes(&[u8]) "bytes";
        serialize_none() "null";
        serialize_unit() "null";
        serialize_unit_struct(&'static str) "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) "a unit variant";
    }

    fn serialize_some<V: ?Sized + Serialize>(self, value: &V) -> Result<(), Error> {
        value.serialize(self)
    }

    refuse_compound!();
}

impl SerializeStruct for RowSerializer<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<V: ?Sized + Serialize>(&mut self, key: &'static str, value: &V) -> Result<(), Error> {
        let at = if self.columns.get(self.next).is_some_and(|(name, _)| *name == key) {
            Some(self.next)
        } else {
            self.columns.iter().position(|(name, _)| *name == key)
        };
        let Some(at) = at else { return Ok(()) };
        self.next = at + 1;
        let (name, ty) = self.columns[at];
        value.serialize(CellSerializer { name, ty, column: &mut self.out[at] })
    }

    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

/// One field's value, into its column.
struct CellSerializer<'a> {
    name: &'a str,
    ty: &'a str,
    column: &'a mut Column,
}

impl CellSerializer<'_> {
    fn refused(&self, what: &str) -> Error {
        Error(format!("batch column {} ({}) given {what}", self.name, self.ty))
    }

    fn integer(self, n: i128) -> Result<(), Error> {
        let (name, ty) = (self.name, self.ty);
        let range = |_| Error(format!("batch column {name} ({ty}) given a number out of range"));
        match self.column {
            Column::BigInt(v) => v.push(Some(i64::try_from(n).map_err(range)?)),
            Column::Integer(v) => v.push(Some(i32::try_from(n).map_err(range)?)),
            _ => return Err(self.refused("a number")),
        }
        Ok(())
    }
}

impl Serializer for CellSerializer<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_bool(self, b: bool) -> Result<(), Error> {
        match self.column {
            Column::Boolean(v) => v.push(Some(b)),
            _ => return Err(self.refused("a boolean")),
        }
        Ok(())
    }

    integers! {
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
    }

    fn serialize_str(self, s: &str) -> Result<(), Error> {
        match self.column {
            Column::Text(v) => v.push(Some(s.to_owned())),
            _ => return Err(self.refused("a string")),
        }
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.column.push_null();
        Ok(())
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }

    fn serialize_some<V: ?Sized + Serialize>(self, value: &V) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<V: ?Sized + Serialize>(self, _: &'static str, value: &V) -> Result<(), Error> {
        value.serialize(self)
    }

    refuse! {
        serialize_f32(f32) "a fractional number";
        serialize_f64(f64) "a fractional number";
        serialize_char(char) "a character";
        serialize_bytes(&[u8]) "bytes";
        serialize_unit_struct(&'static str) "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) "a unit variant";
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(self.refused("a struct"))
    }

    refuse_compound!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Row<'a> {
        id: Option<i64>,
        name: &'a str,
        note: Option<String>,
        on: bool,
        version: i32,
        skipped: &'a str,
    }

    const COLUMNS: &[(&str, &str)] = &[
        ("id", "bigint"),
        ("name", "text"),
        ("note", "text"),
        ("on", "boolean"),
        ("version", "integer"),
        ("at", "timestamptz"),
    ];

    #[test]
    fn fields_go_to_their_columns_by_name_and_missing_ones_are_null() {
        let rows = [
            Row { id: Some(7), name: "a", note: None, on: true, version: 1, skipped: "x" },
            Row { id: None, name: "b", note: Some("n".into()), on: false, version: 2, skipped: "y" },
        ];
        let got = columns(&rows, COLUMNS).unwrap();
        assert_eq!(
            got,
            vec![
                Column::BigInt(vec![Some(7), None]),
                Column::Text(vec![Some("a".into()), Some("b".into())]),
                Column::Text(vec![None, Some("n".into())]),
                Column::Boolean(vec![Some(true), Some(false)]),
                Column::Integer(vec![Some(1), Some(2)]),
                Column::Text(vec![None, None]),
            ]
        );
    }

    #[test]
    fn a_value_of_another_kind_than_its_column_is_an_error() {
        let rows = [Row { id: Some(7), name: "a", note: None, on: true, version: 1, skipped: "x" }];
        let err = columns(&rows, &[("name", "bigint")]).unwrap_err();
        assert_eq!(err, "batch column name (bigint) given a string");
        let err = columns(&rows, &[("on", "text")]).unwrap_err();
        assert_eq!(err, "batch column on (text) given a boolean");
        let err = columns(&[(1, 2)], &[("id", "bigint")]).unwrap_err();
        assert_eq!(err, "a batch row must be a struct, not a tuple");
    }

    #[test]
    fn a_field_given_twice_in_a_row_is_an_error() {
        struct Twice;
        impl Serialize for Twice {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut row = s.serialize_struct("Twice", 2)?;
                row.serialize_field("id", &1)?;
                row.serialize_field("id", &2)?;
                row.end()
            }
        }
        let err = columns(&[Twice], &[("id", "bigint")]).unwrap_err();
        assert_eq!(err, "batch column id given more than one value in row 0");
    }

    #[test]
    fn a_number_out_of_its_column_range_is_an_error() {
        #[derive(Serialize)]
        struct Big {
            version: i64,
        }
        let err = columns(&[Big { version: i64::MAX }], &[("version", "integer")]).unwrap_err();
        assert_eq!(err, "batch column version (integer) given a number out of range");
        assert_eq!(
            columns(&[Big { version: 5 }], &[("version", "integer")]).unwrap(),
            vec![Column::Integer(vec![Some(5)])]
        );
    }
}
