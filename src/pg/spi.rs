//! How the rest of the extension runs SQL: every value a bound parameter, no statement ever
//! built from input; the statements a worker runs for every batch or turn prepared once; a
//! column read as what it is (a NULL where a value must be, or a column that is not there, is
//! an ERROR that names it, never a silent default); and each batch of rows for a SQL function
//! that takes one array per column declared once ([`row_batch!`]).

use pgrx::PgOid;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{self, OwnedPreparedStatement, SpiHeapTupleData};
use std::cell::RefCell;
use std::collections::HashMap;

/// A failed SPI call that is not a Postgres ERROR (those unwind by themselves) is a bug here:
/// raise it as an ERROR so the enclosing subtransaction rolls back.
pub fn ok<T>(result: spi::Result<T>) -> T {
    result.unwrap_or_else(|e| error!("whatsapp_channel: SPI: {e}"))
}

thread_local! {
    /// The statements the workers run for every batch or turn, planned once per process (a
    /// worker's main thread is the only one that runs SQL). Planned anew for every call they
    /// cost a tenth of the listener's time (perf); Postgres re-plans a kept statement by itself
    /// when what it names changes (a re-created extension).
    static PREPARED: RefCell<HashMap<&'static str, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Runs `sql` (a statement that may write) as a statement prepared once, with `args` (whose
/// types are those of the first call); returns the first column of the first row.
pub fn get_one_prepared<T: FromDatum + IntoDatum>(sql: &'static str, args: &[DatumWithOid]) -> Option<T> {
    ok(Spi::connect_mut(|client| {
        prepare_once(client, sql, args)?;
        PREPARED.with_borrow(|p| client.update(&p[sql], Some(1), args)?.first().get_one::<T>())
    }))
}

/// The same, reading every row with `read`.
pub fn rows_prepared<T>(sql: &'static str, args: &[DatumWithOid], read: impl Fn(&SpiHeapTupleData) -> T) -> Vec<T> {
    ok(Spi::connect_mut(|client| {
        prepare_once(client, sql, args)?;
        PREPARED.with_borrow(|p| Ok(client.update(&p[sql], None, args)?.map(|row| read(&row)).collect()))
    }))
}

fn prepare_once(client: &mut spi::SpiClient<'_>, sql: &'static str, args: &[DatumWithOid]) -> spi::Result<()> {
    if !PREPARED.with_borrow(|p| p.contains_key(sql)) {
        let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
        let statement = client.prepare_mut(sql, &types)?.keep();
        PREPARED.with_borrow_mut(|p| p.insert(sql, statement));
    }
    Ok(())
}

/// A type a column is read as, by name: a NULL where a value must be, or a column that is not
/// there, is an ERROR that names it, never a silent default. `Option<T>` reads a nullable column.
pub trait Column: Sized {
    fn read(row: &SpiHeapTupleData, name: &str) -> Self;
}

macro_rules! columns_of_datum_types {
    ($($t:ty),+) => {$(
        impl Column for $t {
            fn read(row: &SpiHeapTupleData, name: &str) -> Self {
                Option::<$t>::read(row, name)
                    .unwrap_or_else(|| error!("whatsapp_channel: column \"{name}\" is NULL where a value is required"))
            }
        }
        impl Column for Option<$t> {
            fn read(row: &SpiHeapTupleData, name: &str) -> Self {
                row.get_by_name(name).unwrap_or_else(|e| error!("whatsapp_channel: column \"{name}\": {e}"))
            }
        }
    )+};
}
columns_of_datum_types!(bool, i32, i64, f64, String, Vec<u8>, Vec<i64>);

/// The value of column `name` as `T` (see [`Column`]).
pub fn column<T: Column>(row: &SpiHeapTupleData, name: &str) -> T {
    T::read(row, name)
}

/// Declares a struct read from a result row: each field is the column of its name, read as its
/// type ([`Column`]), so that the columns are written once, as the fields.
#[macro_export]
macro_rules! sql_row {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty),+ $(,)? }) => {
        $(#[$meta])*
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),+ }

        impl $name {
            /// The struct of a result row, read column by column by name.
            pub fn from_row(row: &pgrx::spi::SpiHeapTupleData) -> $name {
                $name { $($field: $crate::pg::spi::column(row, stringify!($field))),+ }
            }
        }
    };
}

/// A batch of rows for one call of a SQL function that takes one array per column, in the
/// order the columns are declared (see [`row_batch!`]).
pub trait RowBatch {
    /// `SELECT <function>($1, ..., $n)`.
    fn call() -> &'static str;
    fn len(&self) -> usize;
    fn into_args(self) -> Vec<DatumWithOid<'static>>;
}

/// Stores a batch through its SQL function (a statement prepared once) and returns the
/// function's integer answer (how many rows were new, for those that say); nothing is called
/// for an empty batch.
pub fn store_rows<B: RowBatch>(rows: B) -> i64 {
    if rows.len() == 0 {
        return 0;
    }
    let answer: Option<i32> = get_one_prepared(B::call(), &rows.into_args());
    i64::from(answer.unwrap_or(0))
}

/// `SELECT function($1, ..., $n)`, made once per process and kept.
pub fn call_text(function: &str, arguments: usize) -> &'static str {
    let placeholders: Vec<String> = (1..=arguments).map(|i| format!("${i}")).collect();
    format!("SELECT {function}({})", placeholders.join(", ")).leak()
}

/// Declares the rows of one batch call: `$rows` (one `Vec` per column) and `$row` (one row,
/// whose fields the compiler makes every `push` name), with the columns written once, here,
/// in the order of the SQL function's arguments.
#[macro_export]
macro_rules! row_batch {
    ($(#[$doc:meta])* $rows:ident, $row:ident => $function:literal { $($(#[$cdoc:meta])* $column:ident: $ty:ty),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Default)]
        pub struct $rows { $($column: Vec<$ty>),+ }

        #[doc = concat!("One row of [`", stringify!($rows), "`].")]
        pub struct $row { $($(#[$cdoc])* pub $column: $ty),+ }

        impl $rows {
            pub fn push_row(&mut self, row: $row) {
                $(self.$column.push(row.$column);)+
            }
        }

        impl $crate::pg::spi::RowBatch for $rows {
            fn call() -> &'static str {
                static CALL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
                CALL.get_or_init(|| $crate::pg::spi::call_text($function, [$(stringify!($column)),+].len()))
            }
            fn len(&self) -> usize {
                [$(self.$column.len()),+][0]
            }
            fn into_args(self) -> Vec<pgrx::datum::DatumWithOid<'static>> {
                vec![$(self.$column.into()),+]
            }
        }
    };
}

/// Declares a closed set of kinds that SQL holds as text (a CHECK-ed column, an argument): the
/// enum, its one mapping to SQL ([`as_sql`]) and back ([`from_sql`], where an unknown text is
/// an ERROR that names it, never skipped), and its [`Column`] reading.
#[macro_export]
macro_rules! sql_enum {
    ($(#[$meta:meta])* pub enum $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        #[allow(dead_code)]
        impl $name {
            /// The text SQL holds for it.
            pub fn as_sql(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The kind a text names; any other text is an ERROR.
            pub fn from_sql(text: &str) -> $name {
                match text {
                    $($text => $name::$variant,)+
                    other => pgrx::error!("whatsapp_channel: unknown {} {other:?}", $what),
                }
            }
        }

        impl $crate::pg::spi::Column for $name {
            fn read(row: &pgrx::spi::SpiHeapTupleData, name: &str) -> Self {
                $name::from_sql(&$crate::pg::spi::column::<String>(row, name))
            }
        }
    };
}
