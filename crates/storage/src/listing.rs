//! Lists whose rows the caller may already hold, rendered, from an earlier
//! request. The listing query returns only each row's id and version; full
//! rows are read only for the ones the caller does not have, so a list whose
//! rows have not changed costs PostgreSQL a fraction of reading them all.

use std::collections::HashMap;

use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, FromRow, Postgres, Row as _, Type};
use uuid::Uuid;

use crate::error::corrupt;
use crate::{Result, StorageError};

/// One content of one row: its id and the row's `xmin`, the transaction that
/// wrote this version of it. Every write of a row (an UPDATE, a foreign key's
/// `ON UPDATE CASCADE` included) makes a new version with a new `xmin`, and a
/// version never changes, so equal stamps mean equal content. Freezing keeps
/// `xmin` (PostgreSQL 9.4 on). Two versions share an `xmin` only when one
/// transaction wrote the row twice, and then only the last is ever seen
/// outside it (listings never run inside a writing transaction), or when a
/// later write lands on the very same 32-bit transaction id after the counter
/// wrapped: one chance in 2^32 per write, against a kept rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowStamp {
    pub id: Uuid,
    pub version: RowVersion,
}

/// A row's `xmin` (type `xid`, which sqlx does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowVersion(u32);

const XID_OID: Oid = Oid(28);

impl Type<Postgres> for RowVersion {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(XID_OID)
    }
}

impl Decode<'_, Postgres> for RowVersion {
    fn decode(value: PgValueRef<'_>) -> std::result::Result<Self, BoxDynError> {
        Ok(RowVersion(match value.format() {
            PgValueFormat::Binary => u32::from_be_bytes(value.as_bytes()?.try_into()?),
            PgValueFormat::Text => value.as_str()?.parse()?,
        }))
    }
}

/// The stamp of a row read with columns `id` and `row_version` (its `xmin`).
fn stamp_of(row: &PgRow) -> sqlx::Result<RowStamp> {
    Ok(RowStamp {
        id: row.try_get("id")?,
        version: row.try_get("row_version")?,
    })
}

/// A full row read for a listing, with its stamp.
pub(crate) struct Stamped<R> {
    pub stamp: RowStamp,
    pub row: R,
}

impl<'r, R: FromRow<'r, PgRow>> FromRow<'r, PgRow> for Stamped<R> {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Stamped {
            stamp: stamp_of(row)?,
            row: R::from_row(row)?,
        })
    }
}

/// A row whose stamp is decoded at once and the rest only when asked for: a
/// caller that holds this version's rendering never decodes it.
pub(crate) struct UndecodedRow {
    pub stamp: RowStamp,
    row: PgRow,
}

impl UndecodedRow {
    pub fn new(row: PgRow) -> sqlx::Result<Self> {
        Ok(UndecodedRow {
            stamp: stamp_of(&row)?,
            row,
        })
    }

    pub fn column<'r, T: Decode<'r, Postgres> + Type<Postgres>>(
        &'r self,
        name: &str,
    ) -> sqlx::Result<T> {
        self.row.try_get(name)
    }

    /// What the caller holds of this version, or the row decoded as `R`.
    pub fn held_or_decoded<R, T, C>(
        self,
        known: impl Fn(&RowStamp) -> Option<C>,
    ) -> Result<Listed<T, C>>
    where
        R: for<'r> FromRow<'r, PgRow>,
        T: TryFrom<R, Error = StorageError>,
    {
        Ok(match known(&self.stamp) {
            Some(kept) => Listed::Known(kept),
            None => Listed::Read(self.stamp, R::from_row(&self.row)?.try_into()?),
        })
    }
}

/// One item of a listing or lookup: what the caller already had for this
/// version (of a row, or of the rows a variable list is made of), or what was
/// read, with the version it is of.
pub enum Listed<T, C, S = RowStamp> {
    Known(C),
    Read(S, T),
}

/// What the caller holds of each row of a listing, in listing order.
pub(crate) fn held<C>(
    stamps: &[RowStamp],
    known: impl Fn(&RowStamp) -> Option<C>,
) -> Vec<Option<C>> {
    stamps.iter().map(known).collect()
}

/// The ids of the rows the caller does not hold.
pub(crate) fn not_held<C>(stamps: &[RowStamp], held: &[Option<C>]) -> Vec<Uuid> {
    stamps
        .iter()
        .zip(held)
        .filter(|(_, kept)| kept.is_none())
        .map(|(stamp, _)| stamp.id)
        .collect()
}

/// The listing in order, from what the caller holds and the rows read for the
/// rest. Both come from one snapshot, so every row read has its stamp.
pub(crate) fn assemble<T, C>(
    stamps: Vec<RowStamp>,
    held: Vec<Option<C>>,
    read: Vec<Stamped<T>>,
) -> Result<Vec<Listed<T, C>>> {
    let mut read: HashMap<RowStamp, T> = read.into_iter().map(|s| (s.stamp, s.row)).collect();
    stamps
        .into_iter()
        .zip(held)
        .map(|(stamp, kept)| match (kept, read.remove(&stamp)) {
            (Some(kept), _) => Ok(Listed::Known(kept)),
            (None, Some(row)) => Ok(Listed::Read(stamp, row)),
            (None, None) => Err(corrupt(
                "listing",
                "row missing from its snapshot",
                stamp.id,
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: u128, version: u32) -> RowStamp {
        RowStamp {
            id: Uuid::from_u128(n),
            version: RowVersion(version),
        }
    }

    #[test]
    fn rows_not_held_are_named_for_reading() {
        let stamps = [stamp(1, 7), stamp(2, 9), stamp(3, 4)];
        let held = held(&stamps, |s| (s.version.0 != 9).then_some(()));
        assert_eq!(not_held(&stamps, &held), [Uuid::from_u128(2)]);
    }

    #[test]
    fn assembly_keeps_the_listing_order() {
        let stamps = vec![stamp(1, 7), stamp(2, 9), stamp(3, 4)];
        let held = vec![Some("kept"), None, Some("kept")];
        let read = vec![Stamped {
            stamp: stamp(2, 9),
            row: "two",
        }];
        let listed = assemble(stamps, held, read).expect("assembled");
        let shown: Vec<&str> = listed
            .iter()
            .map(|item| match item {
                Listed::Known(kept) => *kept,
                Listed::Read(_, row) => *row,
            })
            .collect();
        assert_eq!(shown, ["kept", "two", "kept"]);
    }

    #[test]
    fn a_row_read_in_another_version_is_an_error() {
        let read = vec![Stamped {
            stamp: stamp(1, 8),
            row: "newer",
        }];
        let listed = assemble::<&str, ()>(vec![stamp(1, 7)], vec![None], read);
        assert!(listed.is_err());
    }
}
